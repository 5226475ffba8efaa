"""One short pre-training loop for CatLIP or CLIP, sharing everything but the head.

Why: the paper's comparison only means something if the two methods differ in
nothing but the objective, so one loop drives both: same data stream, same
augmentation, same AdamW + warm-up/cosine schedule shape (with each method's
own Table 6 betas/LR), same no-weight-decay-on-bias/norm rule as corenet's
``no_decay_bn_filter_bias``, same gradient clipping (1.0, as corenet).

Reproducibility: seeded model init, seeded and resumable data order and
augmentation, checkpoints = weights in safetensors + a state file (optimizer,
step, data position, RNG). A resumed run continues the same sample sequence.
bf16 autocast is used on CUDA (corenet trains in bf16); on CPU it is off by
default because bf16 matmuls are usually slower there.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import data as D
from .losses import bce_multilabel, clip_loss
from .models import CLIP, CatLIP, count_params

# Table 6(a), CC3M: max/min LR and AdamW betas per method
METHOD_DEFAULTS = {
    "catlip": {"lr": 2e-3, "min_lr": 2e-5, "betas": (0.9, 0.999)},
    "clip": {"lr": 5e-4, "min_lr": 1e-6, "betas": (0.9, 0.98)},
}


@dataclass
class TrainConfig:
    method: str = "catlip"
    manifest: str = ""
    vocab_path: str = ""
    out_dir: str = "runs/catlip"
    encoder: str = "tiny"
    resolution: int = 64
    batch_size: int = 32
    steps: int = 30
    lr: float | None = None
    min_lr: float | None = None
    warmup_steps: int = 3
    warmup_init_lr: float = 1e-6
    weight_decay: float = 0.2
    betas: tuple | None = None
    grad_clip: float = 1.0
    reduction: str = "batch_mean"
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16
    device: str = "cpu"
    checkpoint_every: int = 0  # 0 = only at the end
    resume: bool = True
    log_every: int = 1
    num_threads: int = 0  # 0 = leave torch's default
    max_steps_this_run: int | None = None  # stop early (to test resumption)
    cache_images: int = 0  # >0: keep up to N decoded, pre-shrunk images in memory (small data sets)

    def resolved(self) -> "TrainConfig":
        d = METHOD_DEFAULTS[self.method]
        c = TrainConfig(**asdict(self))
        c.lr = d["lr"] if c.lr is None else c.lr
        c.min_lr = d["min_lr"] if c.min_lr is None else c.min_lr
        c.betas = tuple(d["betas"] if c.betas is None else c.betas)
        return c


def lr_at(step: int, c: TrainConfig) -> float:
    if step < c.warmup_steps:
        return c.warmup_init_lr + (c.lr - c.warmup_init_lr) * step / max(1, c.warmup_steps)
    t = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def param_groups(model: torch.nn.Module, wd: float):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def build_model(c: TrainConfig, vocab_size: int | None):
    if c.method == "catlip":
        return CatLIP(vocab_size, c.encoder, c.resolution)
    if c.method == "clip":
        return CLIP(c.encoder, image_size=c.resolution)
    raise ValueError(f"method must be 'catlip' or 'clip', got {c.method!r}")


def _save_ckpt(ckpt: Path, model, opt, step, batcher, c, losses):
    from safetensors.torch import save_file
    ckpt.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(ckpt / "model.safetensors.tmp"), metadata={"method": c.method, "step": str(step)})
    torch.save({"optimizer": opt.state_dict(), "step": step, "data": batcher.state_dict(),
                "rng": torch.random.get_rng_state(), "losses": losses}, ckpt / "state.pt.tmp")
    os.replace(ckpt / "model.safetensors.tmp", ckpt / "model.safetensors")
    os.replace(ckpt / "state.pt.tmp", ckpt / "state.pt")
    (ckpt / "state.json").write_text(json.dumps({"step": step, "data": batcher.state_dict(),
                                                 "config": asdict(c)}, indent=1, default=list))


def train(cfg: TrainConfig, vocab=None, extractor=None, quiet: bool = False) -> dict:
    """Run (or resume) a pre-training run; return the train record (also saved
    as ``<out_dir>/train_record.json``)."""
    c = cfg.resolved()
    if c.num_threads:
        torch.set_num_threads(c.num_threads)
    out = Path(c.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(c.device)
    use_bf16 = c.precision == "bf16" or (c.precision == "auto" and dev.type == "cuda")

    label_fn = None
    if c.method == "catlip":
        if vocab is None:
            from .vocab import load_vocab
            vocab = load_vocab(c.vocab_path)
        if extractor is None:
            from .labels import LabelExtractor
            extractor = LabelExtractor()
        label_fn = lambda cap: vocab.multi_hot(extractor(cap))  # noqa: E731

    torch.manual_seed(c.seed)
    model = build_model(c, len(vocab) if vocab is not None else None).to(dev)
    opt = torch.optim.AdamW(param_groups(model, c.weight_decay), lr=c.lr, betas=c.betas, eps=1e-8)
    stream = D.PairStream([c.manifest], seed=c.seed)
    batcher = D.Batcher(stream, c.batch_size, c.resolution, label_fn, seed=c.seed,
                        cache_images=c.cache_images)

    step, losses = 0, []
    ckpt = out / "checkpoint"
    resumed_from = None
    if c.resume and (ckpt / "state.pt").is_file():
        from safetensors.torch import load_file
        model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(dev)))
        st = torch.load(ckpt / "state.pt", weights_only=False)
        opt.load_state_dict(st["optimizer"])
        batcher.load_state_dict(st["data"])
        torch.random.set_rng_state(st["rng"])
        step, losses = st["step"], list(st["losses"])
        resumed_from = step

    model.train()
    t_start = time.perf_counter()
    n_images, step_times = 0, []
    stop_at = c.steps if c.max_steps_this_run is None else min(c.steps, step + c.max_steps_this_run)
    while step < stop_at:
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c)
        b = batcher.next_batch()
        images = b["images"].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            if c.method == "catlip":
                loss = bce_multilabel(model(images), b["targets"].to(dev), c.reduction)
            else:
                tokens = model.tokenizer(b["captions"]).to(dev)
                loss = clip_loss(*model(images, tokens))
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {step}: {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        if c.method == "clip":
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100.0))
        step += 1
        losses.append(float(loss.item()))
        dt = time.perf_counter() - t0
        step_times.append(dt)
        n_images += images.shape[0]
        if not quiet and (step % c.log_every == 0 or step == stop_at):
            ips = n_images / (time.perf_counter() - t_start)
            eta = (stop_at - step) * (sum(step_times[-10:]) / len(step_times[-10:]))
            print(f"[{c.method}] step {step}/{c.steps} loss {losses[-1]:.4f} lr {lr_at(step - 1, c):.2e} "
                  f"{ips:.1f} img/s eta {eta:.0f}s epoch {stream.epoch} pos {stream.position}", flush=True)
        if c.checkpoint_every and step % c.checkpoint_every == 0:
            _save_ckpt(ckpt, model, opt, step, batcher, c, losses)
    wall = time.perf_counter() - t_start
    _save_ckpt(ckpt, model, opt, step, batcher, c, losses)
    record = {
        "method": c.method, "config": asdict(c), "steps_done": step, "resumed_from": resumed_from,
        "losses": losses, "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "params": count_params(model), "vocab_size": len(vocab) if vocab is not None else None,
        "images_per_s": n_images / wall if wall > 0 else None, "wall_s": wall,
        "data_state": batcher.state_dict(), "precision": "bf16" if use_bf16 else "fp32",
        "torch": torch.__version__, "threads": torch.get_num_threads(),
    }
    (out / "train_record.json").write_text(json.dumps(record, indent=1, default=list))
    return record


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="CatLIP / CLIP short pre-training")
    for f in TrainConfig.__dataclass_fields__.values():
        if f.name == "betas":
            continue
        t = {"int": int, "float": float, "bool": lambda s: s.lower() in ("1", "true", "yes")}.get(
            str(f.type).split(" ")[0].replace("'", ""), str)
        p.add_argument("--" + f.name.replace("_", "-"), type=t if t else str, default=f.default)
    a = p.parse_args(argv)
    cfg = TrainConfig(**{k: v for k, v in vars(a).items()})
    rec = train(cfg)
    print(json.dumps({k: rec[k] for k in ("method", "steps_done", "first_loss", "last_loss", "images_per_s")}))


if __name__ == "__main__":
    main()
