"""One short pre-training loop for CatLIP or CLIP, sharing everything but the head.

Why: the paper's comparison only means something if the two methods differ in
nothing but the objective, so one loop drives both: same data stream, same
augmentation, same AdamW + warm-up/cosine schedule shape (with each method's
own Table 6 betas/LR), same no-weight-decay-on-bias/norm rule as corenet's
``no_decay_bn_filter_bias``, same gradient clipping (1.0, as corenet).

Reproducibility: seeded model init, seeded and resumable data order and
augmentation, checkpoints = weights in safetensors + a state file (optimizer,
step, data position, RNG). A resumed run continues the same sample sequence.
Precision follows ``suite.devices``: bf16 autocast only where the hardware
computes bf16 natively (corenet trains in bf16 on A100s), else fp32.

Data parallel: under ``torchrun`` (``WORLD_SIZE`` > 1) every rank walks the same
seeded stream and decodes its own slice of each global batch; gradients are
averaged by DDP (gloo on CPU, NCCL on GPUs). CLIP's contrastive loss all-gathers
the embeddings with gradients, so N processes compute exactly the
single-process loss of the global batch (the all-gather the paper names as a
CLIP cost). Only rank 0 writes checkpoints and records.

    torchrun --nproc_per_node 2 -m reproductions.catlip.train --method catlip \
        --manifest pairs.jsonl --vocab-path vocab.json --steps 1000 --batch-size 256

The finished model is exported as an encoder checkpoint (``export_encoder``):
the folder ``models.load_encoder`` reads, plus CatLIP's classifier and
vocabulary for Transfer Init.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from . import data as D
from .losses import bce_multilabel, clip_loss
from .models import CLIP, CatLIP, EncoderConfig, count_params, save_encoder

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
    precision: str = "auto"  # auto (bf16 where native, see suite.devices) | fp32 | bf16
    device: str = "cpu"
    checkpoint_every: int = 0  # 0 = only at the end
    resume: bool = True
    log_every: int = 1
    num_threads: int = 0  # 0 = leave torch's default
    max_steps_this_run: int | None = None  # stop early (to test resumption)
    cache_images: int = 0  # >0: keep up to N decoded, pre-shrunk images in memory (small data sets)
    crop_scale_min: float = 0.08  # random resized crop area range (min, 1); 0.08 is the usual ImageNet setting

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
    for _name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join torchrun's process group when launched by it (gloo on CPU, NCCL on CUDA); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


def _gather(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """All ranks' rows in rank order, differentiable (each rank's gradient flows back to its own rows)."""
    if d.world == 1:
        return x
    import torch.distributed.nn.functional as dnn

    return torch.cat(dnn.all_gather(x), dim=0)


def _interleave(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Rank-ordered gathered rows back into global batch order (rank r held rows r, r + world, ...)."""
    if d.world == 1:
        return x
    n = x.shape[0] // d.world
    return x.reshape(d.world, n, *x.shape[1:]).transpose(0, 1).reshape(x.shape)


def _use_bf16(c: "TrainConfig", dev: torch.device) -> bool:
    if c.precision in ("fp32", "float32"):
        return False
    if c.precision in ("bf16", "bfloat16"):
        return True
    from suite.devices import autocast_dtype

    return autocast_dtype(str(dev)) == torch.bfloat16


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
    # state.pt holds the weights too: it is the one file resume reads, replaced in one rename, so a kill between
    # the two renames below cannot pair new weights with an old optimizer state (tensors and plain containers
    # only, so it loads with weights_only=True)
    torch.save({"optimizer": opt.state_dict(), "step": step, "data": batcher.state_dict(), "model": sd,
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
    dist_ = init_distributed(c.device)
    if dist_.world > 1 and c.device.startswith("cuda"):
        c.device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    quiet = quiet or not dist_.main
    out = Path(c.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(c.device)
    use_bf16 = _use_bf16(c, dev)

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
                        cache_images=c.cache_images, crop_scale_min=c.crop_scale_min)

    step, losses = 0, []
    ckpt = out / "checkpoint"
    resumed_from = None
    if c.resume and (ckpt / "state.pt").is_file():
        from safetensors.torch import load_file
        st = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(st["model"] if "model" in st else load_file(str(ckpt / "model.safetensors"),
                                                                            device=str(dev)))
        opt.load_state_dict(st["optimizer"])
        batcher.load_state_dict(st["data"])
        torch.random.set_rng_state(st["rng"])
        step, losses = st["step"], list(st["losses"])
        resumed_from = step

    model.train()
    net = model
    if dist_.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    t_start = time.perf_counter()
    n_images, step_times = 0, []
    stop_at = c.steps if c.max_steps_this_run is None else min(c.steps, step + c.max_steps_this_run)
    while step < stop_at:
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, c)
        b = batcher.next_batch(dist_.rank, dist_.world)
        images = b["images"].to(dev, non_blocking=True)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            if c.method == "catlip":
                loss = bce_multilabel(net(images), b["targets"].to(dev), c.reduction)
            else:
                tokens = model.tokenizer(b["captions"]).to(dev)
                img, txt, scale = net(images, tokens)
                loss = clip_loss(_interleave(_gather(img, dist_), dist_), _interleave(_gather(txt, dist_), dist_),
                                 scale)
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
        losses.append(_global_mean(loss.detach(), dist_))
        dt = time.perf_counter() - t0
        step_times.append(dt)
        n_images += images.shape[0] * dist_.world
        if not quiet and (step % c.log_every == 0 or step == stop_at):
            ips = n_images / (time.perf_counter() - t_start)
            eta = (stop_at - step) * (sum(step_times[-10:]) / len(step_times[-10:]))
            print(f"[{c.method}] step {step}/{c.steps} loss {losses[-1]:.4f} lr {lr_at(step - 1, c):.2e} "
                  f"{ips:.1f} img/s eta {eta:.0f}s epoch {stream.epoch} pos {stream.position}", flush=True)
        if c.checkpoint_every and step % c.checkpoint_every == 0 and dist_.main:
            _save_ckpt(ckpt, model, opt, step, batcher, c, losses)
    wall = time.perf_counter() - t_start
    if dist_.main:
        _save_ckpt(ckpt, model, opt, step, batcher, c, losses)
    _barrier(dist_)
    record = {
        "method": c.method, "config": asdict(c), "steps_done": step, "resumed_from": resumed_from,
        "losses": losses, "first_loss": losses[0] if losses else None,
        "last_loss": losses[-1] if losses else None,
        "params": count_params(model), "vocab_size": len(vocab) if vocab is not None else None,
        "images_per_s": n_images / wall if wall > 0 else None, "wall_s": wall,
        "data_state": batcher.state_dict(), "precision": "bf16" if use_bf16 else "fp32",
        "torch": torch.__version__, "threads": torch.get_num_threads(), "world_size": dist_.world,
    }
    if dist_.main:
        (out / "train_record.json").write_text(json.dumps(record, indent=1, default=list))
    record["model"] = model
    return record


def _global_mean(loss: torch.Tensor, d: Dist) -> float:
    """The loss of the global batch (CatLIP's per-rank losses are means over equal shards; CLIP's are equal)."""
    if d.world > 1:
        import torch.distributed as dist

        loss = loss.clone()
        dist.all_reduce(loss)
        loss /= d.world
    return float(loss.item())


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def export_encoder(model, c: TrainConfig, out_dir: str | Path, vocab=None, **extra) -> Path:
    """The trained image tower as an encoder checkpoint (``models.load_encoder``); CatLIP's classifier goes to
    ``head.safetensors`` and its vocabulary to ``vocab.json`` (what Transfer Init needs)."""
    cfg = EncoderConfig.preset(c.encoder, c.resolution, method=c.method, steps=c.steps, batch=c.batch_size,
                               seed=c.seed, **extra)
    head = None
    if c.method == "catlip":
        head = {"weight": model.classifier.weight, "bias": model.classifier.bias}
    out = save_encoder(model.image_encoder, cfg, out_dir, extra_tensors=head)
    if vocab is not None:
        vocab.save(out / "vocab.json")
    return out


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
    if init_distributed(cfg.device).main:
        export_encoder(rec["model"], cfg.resolved(), Path(cfg.out_dir) / "encoder",
                       vocab=_load_vocab(cfg) if cfg.method == "catlip" else None)
        print(json.dumps({k: rec[k] for k in ("method", "steps_done", "first_loss", "last_loss", "images_per_s")}))


def _load_vocab(cfg: TrainConfig):
    from .vocab import load_vocab

    return load_vocab(cfg.vocab_path)


if __name__ == "__main__":
    main()
