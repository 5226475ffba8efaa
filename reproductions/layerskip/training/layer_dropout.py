"""Per-layer, per-sample layer dropout (LayerSkip §4.1).

p(l, t) = S(t) · D(l) · p_max with
  D(l) = e^(l·ln2/(L−1)) − 1        (0 at the first layer, 1 at the last)   scale="exp"
  S(t) = 1                           (finetuning, continual pretraining)     schedule="constant"
  S(t) = e^(t·ln2/(T−1)) − 1         (pretraining from scratch)              schedule="exp"
Layer l of sample b is skipped when its keep mask is False (Bernoulli with P(drop) = p(l, t)).

Masks are a pure function of (seed, layer, step, batch size): each layer draws from its own
generator seeded from (seed, layer, step), so a draw is reproducible on its own, a resumed run
draws exactly what the uninterrupted run drew, and every data-parallel rank (same seed, same
local batch size) drops the same number of samples per layer, as the paper prescribes.
"""
from __future__ import annotations

import math

import torch

DEPTH_SCALES = ("exp", "linear", "uniform")
TIME_SCHEDULES = ("constant", "exp")


def depth_scale(layer: int, n_layers: int, kind: str = "exp") -> float:
    """D(l) in [0, 1]: 0 at layer 0 and 1 at layer L−1 (``uniform`` is 1 everywhere)."""
    if not 0 <= layer < n_layers:
        raise ValueError(f"layer {layer} outside [0, {n_layers})")
    if kind == "uniform":
        return 1.0
    if n_layers == 1:
        return 0.0
    x = layer / (n_layers - 1)
    if kind == "exp":
        return math.exp(x * math.log(2.0)) - 1.0
    if kind == "linear":
        return x
    raise ValueError(f"unknown depth scale {kind!r}; known: {DEPTH_SCALES}")


def time_scale(step: int, total_steps: int, schedule: str = "constant") -> float:
    """S(t): 1 (constant) or e^(t·ln2/(T−1)) − 1 (exp: 0 at t=0, 1 at t=T−1)."""
    if schedule == "constant":
        return 1.0
    if schedule == "exp":
        if total_steps <= 1:
            return 1.0
        t = min(max(step, 0), total_steps - 1)
        return math.exp(t * math.log(2.0) / (total_steps - 1)) - 1.0
    raise ValueError(f"unknown time schedule {schedule!r}; known: {TIME_SCHEDULES}")


def dropout_rates(n_layers: int, p_max: float, step: int = 0, total_steps: int = 1,
                  depth: str = "exp", schedule: str = "constant") -> list[float]:
    """p(l, t) for every layer l at step t."""
    if not 0.0 <= p_max <= 1.0:
        raise ValueError(f"p_max must be in [0, 1], got {p_max}")
    s = time_scale(step, total_steps, schedule)
    return [s * depth_scale(l, n_layers, depth) * p_max for l in range(n_layers)]


def _layer_seed(seed: int, layer: int, step: int) -> int:
    # A fixed mixing of (seed, layer, step) into 63 bits; distinct triples give distinct streams.
    x = (int(seed) * 0x9E3779B97F4A7C15 + (int(layer) + 1) * 0xBF58476D1CE4E5B9
         + (int(step) + 1) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & ((1 << 64) - 1)
    x ^= x >> 32
    return x & ((1 << 63) - 1)


class LayerDropout:
    """Keep-mask generator for per-sample layer dropout."""

    def __init__(self, n_layers: int, p_max: float, *, depth: str = "exp", schedule: str = "constant",
                 total_steps: int = 1, seed: int = 0):
        dropout_rates(n_layers, p_max, 0, total_steps, depth, schedule)  # validates
        self.n_layers, self.p_max, self.depth, self.schedule = n_layers, float(p_max), depth, schedule
        self.total_steps, self.seed = int(total_steps), int(seed)

    @property
    def enabled(self) -> bool:
        return self.p_max > 0.0

    def rates(self, step: int) -> list[float]:
        return dropout_rates(self.n_layers, self.p_max, step, self.total_steps, self.depth, self.schedule)

    def layer_mask(self, layer: int, step: int, batch_size: int) -> torch.Tensor:
        """BoolTensor[batch_size]: True = sample keeps (computes) this layer."""
        p = self.rates(step)[layer]
        if p <= 0.0:
            return torch.ones(batch_size, dtype=torch.bool)
        g = torch.Generator(device="cpu")
        g.manual_seed(_layer_seed(self.seed, layer, step))
        return torch.rand(batch_size, generator=g) >= p

    def masks(self, step: int, batch_size: int, device: torch.device | str | None = None
              ) -> list[torch.Tensor] | None:
        """Keep masks for every layer, or None when no layer can drop (p_max = 0)."""
        if not self.enabled:
            return None
        out = [self.layer_mask(l, step, batch_size) for l in range(self.n_layers)]
        if device is not None:
            out = [m.to(device) for m in out]
        return out
