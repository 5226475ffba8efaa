"""One resumable, data-parallel fine-tuning loop shared by the three dense heads.

Why one loop: multi-label, Mask R-CNN and DeepLabv3 fine-tuning differ only in the model and
the per-batch loss, so schedule (warm-up + cosine or multi-step, Tables 7c/8 of arXiv 2404.15653
v1), AdamW with layer-wise LR decay, checkpointing and DDP live here once.

Reproducibility: the data order of epoch e is a pure function of (seed, e) and augmentation draws
come from a generator seeded by (seed, step, rank), so a run killed at step k and resumed sees the
same batches as an uninterrupted one; the state saved is weights (safetensors), optimizer
(``torch.load(weights_only=True)``), step and sampler position.

Data parallel: under ``torchrun`` every rank takes its slice of each global batch (per-rank batch
``batch_size``, as corenet's per-GPU batch) and DDP averages gradients (gloo on CPU, NCCL on GPU).
"""
from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from suite.records import read_json, write_json_atomic

from .dense_vit import param_groups

StepLoss = Callable[[nn.Module, list[Any], torch.Generator], torch.Tensor]


@dataclass
class FitConfig:
    steps: int
    batch_size: int
    lr: float
    min_lr: float = 0.0
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    warmup_init_lr: float = 1e-6
    schedule: str = "cosine"
    """``cosine`` (max -> min after warm-up) or ``multistep`` (times ``gamma`` at each milestone)."""
    milestones: tuple[float, ...] = ()
    """Fractions of ``steps`` where the multi-step schedule decays (Table 8b: epochs 22 and 24 of 25)."""
    gamma: float = 0.1
    layer_decay: float | None = None
    grad_clip: float | None = None
    seed: int = 0
    checkpoint_every: int = 0
    log_every: int = 10


@dataclass
class FitResult:
    steps_done: int
    losses: list[float]
    wall_s: float
    s_per_step: float | None
    resumed_from: int | None
    world_size: int
    extra: dict[str, Any] = field(default_factory=dict)


def lr_at(step: int, c: FitConfig) -> float:
    if step < c.warmup_steps:
        return c.warmup_init_lr + (c.lr - c.warmup_init_lr) * step / max(1, c.warmup_steps)
    if c.schedule == "multistep":
        passed = sum(step >= round(m * c.steps) for m in c.milestones)
        return c.lr * (c.gamma ** passed)
    if c.schedule != "cosine":
        raise ValueError(f"schedule must be 'cosine' or 'multistep', got {c.schedule!r}")
    t = (step - c.warmup_steps) / max(1, c.steps - c.warmup_steps)
    return c.min_lr + 0.5 * (c.lr - c.min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


class EpochSampler:
    """Global batches of indices: a seeded permutation per epoch, walked without replacement, resumable."""

    def __init__(self, n: int, global_batch: int, seed: int):
        if n <= 0:
            raise ValueError("cannot train on an empty data set")
        self.n, self.global_batch, self.seed = n, global_batch, seed
        self.epoch, self.position = 0, 0

    def _perm(self, epoch: int) -> list[int]:
        order = list(range(self.n))
        random.Random(self.seed * 1_000_003 + epoch).shuffle(order)
        return order

    def next_batch(self) -> list[int]:
        out: list[int] = []
        while len(out) < self.global_batch:
            perm = self._perm(self.epoch)
            take = perm[self.position:self.position + self.global_batch - len(out)]
            out.extend(take)
            self.position += len(take)
            if self.position >= self.n:
                self.epoch, self.position = self.epoch + 1, 0
        return out

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, s: dict[str, int]) -> None:
        self.epoch, self.position = int(s["epoch"]), int(s["position"])


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def _maybe_ddp(model: nn.Module, device: str) -> nn.Module:
    if _world()[1] == 1:
        return model
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def save_state(state_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, sampler: EpochSampler,
               losses: list[float]) -> None:
    """Weights as safetensors + optimizer as a plain tensor dict; the JSON is written last (= complete)."""
    from safetensors.torch import save_file

    state_dir.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(sd, str(state_dir / "model.safetensors.tmp"))
    torch.save(opt.state_dict(), state_dir / "optimizer.pt.tmp")
    os.replace(state_dir / "model.safetensors.tmp", state_dir / "model.safetensors")
    os.replace(state_dir / "optimizer.pt.tmp", state_dir / "optimizer.pt")
    write_json_atomic(state_dir / "state.json", {"step": step, "sampler": sampler.state_dict(), "losses": losses})


def load_state(state_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, sampler: EpochSampler,
               device: str) -> tuple[int, list[float]] | None:
    if not (state_dir / "state.json").is_file():
        return None
    from safetensors.torch import load_file

    st = read_json(state_dir / "state.json")
    model.load_state_dict(load_file(str(state_dir / "model.safetensors"), device=device))
    opt.load_state_dict(torch.load(state_dir / "optimizer.pt", map_location=device, weights_only=True))
    sampler.load_state_dict(st["sampler"])
    return int(st["step"]), [float(x) for x in st["losses"]]


def fit(model: nn.Module, step_loss: StepLoss, dataset: Sequence[Any], cfg: FitConfig, state_dir: Path, *,
        device: str, encoder_prefix: str, num_layers: int, log: Callable[[str], None] | None = print,
        name: str = "dense", max_steps_this_run: int | None = None) -> FitResult:
    """Train ``model`` in place for ``cfg.steps`` steps (resuming from ``state_dir`` if a state is there)."""
    rank, size = _world()
    torch.manual_seed(cfg.seed)
    model.to(device).train()
    opt = torch.optim.AdamW(param_groups(model, encoder_prefix, num_layers, cfg.lr, cfg.weight_decay,
                                         cfg.layer_decay), lr=cfg.lr, betas=cfg.betas)
    sampler = EpochSampler(len(dataset), cfg.batch_size * size, cfg.seed)
    state_dir = Path(state_dir)
    loaded = load_state(state_dir, model, opt, sampler, device)
    step, losses = loaded if loaded else (0, [])
    resumed_from = step if loaded else None
    net = _maybe_ddp(model, device)
    stop = cfg.steps if max_steps_this_run is None else min(cfg.steps, step + max_steps_this_run)
    t0, first = time.perf_counter(), step
    while step < stop:
        lr = lr_at(step, cfg)
        for g in opt.param_groups:
            g["lr"] = lr * g["lr_scale"]
        idx = sampler.next_batch()[rank * cfg.batch_size:(rank + 1) * cfg.batch_size]
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 1_009 + rank)
        loss = step_loss(net, [dataset[i] for i in idx], gen)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"[{name}] non-finite loss at step {step}: {loss.item()}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        step += 1
        losses.append(float(loss.item()))
        if log and rank == 0 and (step % cfg.log_every == 0 or step == stop):
            log(f"[{name}] step {step}/{cfg.steps} loss {losses[-1]:.4f} lr {lr:.2e} "
                f"{(time.perf_counter() - t0) / (step - first):.2f} s/step")
        if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step < cfg.steps and rank == 0:
            save_state(state_dir, model, opt, step, sampler, losses)
        _ = net  # keep the DDP wrapper alive for the whole loop
    wall = time.perf_counter() - t0
    if rank == 0 and step > first:
        save_state(state_dir, model, opt, step, sampler, losses)
    _barrier()
    return FitResult(step, losses, wall, wall / (step - first) if step > first else None, resumed_from, size)


def fit_config_json(cfg: FitConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
