"""A short LayerSkip training loop (single process, or torchrun data parallel when WORLD_SIZE > 1).

* AdamW, linear warmup then cosine/linear decay (the lr is a pure function of the step), grad clipping.
* Layer dropout masks and the batch order are pure functions of (seed, step); the curriculum,
  optimizer and RNG states go into ``training_state.pt``; so a killed run resumes from its last
  checkpoint and ends with the same weights as an uninterrupted one.
* Checkpoints ``<out>/checkpoint-<step>/`` (periodic) and ``<out>/final/``: HF layout via
  ``save_llama`` + the tokenizer + ``training_state.pt``. ``<out>/train_record.json`` records the
  config, losses every k steps, wall time and throughput.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from suite.devices import autocast_dtype

from .curriculum import make_curriculum
from .early_exit_loss import early_exit_loss, layer_loss_weights
from .layer_dropout import LayerDropout
from .recipe import TrainConfig

STATE_FILE = "training_state.pt"
RECORD_FILE = "train_record.json"
THREADS_POLL_EVERY = 10


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Learning rate for optimizer step ``step`` (0-based)."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.decay == "constant":
        return cfg.lr
    span = max(1, cfg.steps - cfg.warmup_steps)
    frac = min(1.0, (step - cfg.warmup_steps) / span)
    lo = cfg.lr * cfg.min_lr_ratio
    if cfg.decay == "linear":
        return lo + (cfg.lr - lo) * (1.0 - frac)
    if cfg.decay == "cosine":
        return lo + (cfg.lr - lo) * 0.5 * (1.0 + math.cos(math.pi * frac))
    raise ValueError(f"unknown decay {cfg.decay!r}")


def build_model(cfg: TrainConfig, tokenizer) -> nn.Module:
    from ..model import Llama, LlamaConfig
    torch.manual_seed(cfg.seed)
    lc = LlamaConfig(vocab_size=len(tokenizer), dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                     n_kv_heads=cfg.n_kv_heads or cfg.n_heads, intermediate_size=cfg.ffn_size,
                     rope_theta=cfg.rope_theta, max_seq_len=cfg.max_seq_len,
                     tie_word_embeddings=cfg.tie_word_embeddings, bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return Llama(lc)


def _default_save(model: nn.Module, d: Path) -> None:
    from ..checkpoint import save_llama
    save_llama(model, d)


def _default_load(model: nn.Module, d: Path) -> None:
    from ..checkpoint import load_llama
    loaded = load_llama(d, dtype=next(model.parameters()).dtype)
    model.load_state_dict(loaded.state_dict())


class _Step(nn.Module):
    """forward_train + early-exit loss as one forward(), so DistributedDataParallel can hook it."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels, keep_masks, weights):
        hiddens = self.model.forward_train(input_ids, keep_masks)
        return early_exit_loss(hiddens, self.model.head, labels, weights)


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def latest_checkpoint(out_dir: Path) -> Path | None:
    cands = []
    for d in Path(out_dir).glob("checkpoint-*"):
        if (d / STATE_FILE).is_file() and d.name.split("-")[-1].isdigit():
            cands.append((int(d.name.split("-")[-1]), d))
    return max(cands)[1] if cands else None


def _log(msg: str) -> None:
    print(msg, flush=True, file=sys.stderr)


def train(cfg: TrainConfig, data, out_dir: str | os.PathLike, *, tokenizer=None, model: nn.Module | None = None,
          resume: bool = True, stop_after: int | None = None,
          save_model: Callable[[nn.Module, Path], None] = _default_save,
          load_model: Callable[[nn.Module, Path], None] = _default_load,
          device: str = "cpu", log: Callable[[str], None] = _log,
          threads: Callable[[], int] | None = None) -> dict[str, Any]:
    """Train ``model`` (built from ``cfg`` if None) on ``data.batch(step, rank, world)``.

    ``stop_after`` ends the run after that many steps without writing ``final`` (used to test
    resumption). ``threads``: asked every few steps how many CPU threads to use now (e.g. a
    ``suite.cores.CoreShare``: the last of two side-by-side trainers takes both cores); it changes the
    speed only, not the weights. Returns the train record.
    """
    out = Path(out_dir)
    rank, world = _dist_info()
    distributed = world > 1
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if model is None:
        model = build_model(cfg, tokenizer)
    model.to(device)
    model.train()
    step_mod: nn.Module = _Step(model)
    if distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP
        # layer dropout can leave a layer unused on a step: find_unused_parameters
        step_mod = DDP(step_mod, find_unused_parameters=True)

    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.dim() >= 2 else no_decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg.lr, betas=cfg.betas, eps=1e-8)
    dropper = LayerDropout(cfg.n_layers, cfg.effective_p_max, depth=cfg.dropout_depth,
                           schedule=cfg.dropout_schedule, total_steps=cfg.steps, seed=cfg.seed)
    curriculum = make_curriculum(cfg.effective_curriculum, cfg.n_layers, rotation=cfg.rotation,
                                 total_steps=cfg.steps)

    record: dict[str, Any] = {"config": cfg.to_dict(), "seed": cfg.seed, "world_size": world,
                              "losses": [], "segments": []}
    start = 0
    ck = latest_checkpoint(out) if resume else None
    if ck is not None:
        load_model(model, ck)
        st = torch.load(ck / STATE_FILE, map_location="cpu", weights_only=True)
        opt.load_state_dict(st["optimizer"])
        curriculum.load_state_dict(st["curriculum"])
        torch.set_rng_state(st["torch_rng"])
        start = int(st["step"])
        rec_path = ck / RECORD_FILE
        if rec_path.is_file():
            record = json.loads(rec_path.read_text())
            record["losses"] = [x for x in record["losses"] if x["step"] <= start]
        log(f"[train] resumed from {ck} at step {start}")
    elif cfg.seed is not None:
        torch.manual_seed(cfg.seed)

    def save(dirname: str, step: int) -> Path:
        d = out / dirname
        if rank == 0:
            tmp = out / f".tmp-{dirname}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            save_model(model, tmp)
            if tokenizer is not None and hasattr(tokenizer, "save_pretrained"):
                tokenizer.save_pretrained(str(tmp))
            torch.save({"step": step, "optimizer": opt.state_dict(), "curriculum": curriculum.state_dict(),
                        "torch_rng": torch.get_rng_state(), "config": cfg.to_dict()}, tmp / STATE_FILE)
            (tmp / RECORD_FILE).write_text(json.dumps(record, indent=1))
            shutil.rmtree(d, ignore_errors=True)
            tmp.rename(d)
            if dirname.startswith("checkpoint-") and cfg.keep_checkpoints > 0:
                olds = sorted((int(p.name.split("-")[-1]), p) for p in out.glob("checkpoint-*")
                              if p.name.split("-")[-1].isdigit())
                for _, p in olds[: -cfg.keep_checkpoints]:
                    shutil.rmtree(p, ignore_errors=True)
        if distributed:
            dist.barrier()
        return d

    out.mkdir(parents=True, exist_ok=True)
    end = cfg.steps if stop_after is None else min(cfg.steps, start + stop_after)
    params = [p for p in model.parameters() if p.requires_grad]
    t_seg = time.time()
    seg_tokens = 0
    window_loss, window_n, window_tok, window_t = 0.0, 0, 0, time.time()
    amp_dtype = autocast_dtype(device, None if cfg.precision == "auto" else cfg.precision)
    amp_dev = "cuda" if device.startswith("cuda") else "cpu"
    record["precision"] = str(amp_dtype or torch.float32).removeprefix("torch.")
    for step in range(start, end):
        if threads is not None and step % THREADS_POLL_EVERY == 0:
            _retune_threads(threads(), step, record, log)
        b = data.batch(step, rank, world)
        ids, labels = b["input_ids"].to(device), b["labels"].to(device)
        masks = dropper.masks(step, ids.shape[0], device=device)
        weights = layer_loss_weights(cfg.n_layers, curriculum.get(), cfg.e_scale, cfg.scale_type)
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        with torch.autocast(amp_dev, dtype=amp_dtype or torch.bfloat16, enabled=amp_dtype is not None):
            loss, per_layer = step_mod(ids, labels, masks, weights)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gnorm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip) if cfg.grad_clip > 0 else torch.tensor(0.0)
        opt.step()
        curriculum.step()

        ntok = int((labels[:, 1:] != -100).sum())
        seg_tokens += ntok
        window_loss += float(loss.detach())
        window_n += 1
        window_tok += ntok
        done = step + 1
        if done % cfg.loss_record_every == 0 or done == cfg.steps:
            record["losses"].append({"step": done, "loss": round(float(loss.detach()), 5),
                                     "last_layer_ce": round(float(per_layer[cfg.n_layers - 1]), 5),
                                     "lr": lr, "grad_norm": round(float(gnorm), 4)})
        if done % cfg.log_every == 0 or done == end:
            now = time.time()
            tps = window_tok * world / max(1e-9, now - window_t)
            sps = window_n / max(1e-9, now - window_t)
            eta = (cfg.steps - done) / max(1e-9, sps)
            if rank == 0:
                log(f"[train] step {done}/{cfg.steps} loss {window_loss / window_n:.4f} lr {lr:.2e} "
                    f"{tps:.0f} tgt tok/s {sps:.2f} step/s ETA {eta / 60:.1f} min")
            window_loss, window_n, window_tok, window_t = 0.0, 0, 0, now
        if cfg.checkpoint_every > 0 and done % cfg.checkpoint_every == 0 and done < cfg.steps:
            _close_segment(record, start, done, t_seg, seg_tokens * world)
            save(f"checkpoint-{done}", done)
            record["segments"].pop()  # re-added (extended) at the next save / at the end

    _close_segment(record, start, end, t_seg, seg_tokens * world)
    wall = sum(s["wall_s"] for s in record["segments"])
    toks = sum(s["target_tokens"] for s in record["segments"])
    record.update(wall_s=round(wall, 2), target_tokens=toks, tokens_per_s=round(toks / max(1e-9, wall), 1),
                  steps_per_s=round(sum(s["end"] - s["start"] for s in record["segments"]) / max(1e-9, wall), 4),
                  final_step=end, complete=end >= cfg.steps)
    if end >= cfg.steps:
        save("final", end)
    elif cfg.checkpoint_every <= 0 or end % cfg.checkpoint_every:
        save(f"checkpoint-{end}", end)  # interrupted on purpose: keep the state to resume
    if rank == 0:
        (out / RECORD_FILE).write_text(json.dumps(record, indent=1))
    return record


def _retune_threads(n: int, step: int, record: dict[str, Any], log: Callable[[str], None]) -> None:
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
        record.setdefault("thread_changes", []).append({"step": step, "threads": n})
        log(f"[train] step {step}: now {n} CPU thread(s)")


def _close_segment(record, start, end, t0, tokens):
    record["segments"].append({"start": start, "end": end, "wall_s": round(time.time() - t0, 2),
                               "target_tokens": tokens})


def main(argv=None) -> None:
    """python -m reproductions.layerskip.training.trainer --out DIR [--variant ld+ee] [--setting topv2-finetune]
    [--set key=value ...]: train a mini model on TOPv2 (REPRO_DATA_DIR)."""
    import argparse

    from .. import topv2
    from .recipe import setting
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--setting", default="topv2-finetune")
    ap.add_argument("--variant", default="ld+ee")
    ap.add_argument("--set", nargs="*", default=[], help="TrainConfig overrides key=value (JSON values)")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--eval-n", type=int, default=0, help="greedy EM on the first N test rows at the end")
    a = ap.parse_args(argv)
    kw: dict[str, Any] = {}
    for s in a.set:
        k, v = s.split("=", 1)
        try:
            kw[k] = json.loads(v)
        except json.JSONDecodeError:
            kw[k] = v
    cfg = setting(a.setting, recipe_only=True, variant=a.variant, **kw)
    rows = topv2.load_split("train", cfg.domains, a.data_root)
    tok = topv2.build_tokenizer(rows)
    data = topv2.make_train_batches(tok, rows, cfg.batch_size // int(os.environ.get("WORLD_SIZE", "1"))
                                    * int(os.environ.get("WORLD_SIZE", "1")), seed=cfg.seed,
                                    bucket=cfg.bucket_batches, max_len=cfg.max_seq_len)
    rec = train(cfg, data, a.out, tokenizer=tok, resume=not a.no_resume)
    if a.eval_n and _dist_info()[0] == 0:
        from ..checkpoint import load_llama
        m = load_llama(Path(a.out) / "final")
        test = topv2.load_split("test", cfg.domains, a.data_root)[: a.eval_n]
        t0 = time.time()
        res = topv2.evaluate(m, tok, test, exit_layers=list(range(1, cfg.n_layers)))
        res["eval_wall_s"] = round(time.time() - t0, 1)
        rec["eval"] = res
        (Path(a.out) / RECORD_FILE).write_text(json.dumps(rec, indent=1))
        print(json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
