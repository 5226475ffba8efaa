"""Early-exit loss through the shared head (LayerSkip §4.1).

J = Σ_l ẽ(t, l) · CE(head(h_l), y), ẽ(t, l) = C(t, l)·e(l) / Σ_i C(t, i)·e(i).

Scale types e(l) (L layers, s = e_scale):
  ``sum_l`` (default, the paper's):  e(l) = s·Σ_{i=0}^{l} i for l < L−1;  e(L−1) = (L−1) + s·Σ_{i=0}^{L−2} i
  torchtune-style: base(l) ∈ {uniform: 1, linear_l: l+1, sum_l_tt: Σ_{i=0}^{l}(i+1), sqrt_l: √(l+1),
  inv_l: 1/(l+1)}, multiplied by s for every layer but the last.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

SCALE_TYPES = ("sum_l", "uniform", "linear_l", "sum_l_tt", "sqrt_l", "inv_l")
IGNORE_INDEX = -100


def loss_scales(n_layers: int, e_scale: float = 1.0, scale_type: str = "sum_l") -> list[float]:
    """Unnormalised per-layer weights e(l)."""
    L = n_layers
    if scale_type == "sum_l":
        e = [e_scale * (l * (l + 1) / 2) for l in range(L)]
        e[L - 1] = (L - 1) + e_scale * ((L - 2) * (L - 1) / 2 if L >= 2 else 0.0)
        return [float(x) for x in e]
    base = {
        "uniform": lambda l: 1.0,
        "linear_l": lambda l: float(l + 1),
        "sum_l_tt": lambda l: (l + 1) * (l + 2) / 2,
        "sqrt_l": lambda l: math.sqrt(l + 1),
        "inv_l": lambda l: 1.0 / (l + 1),
    }.get(scale_type)
    if base is None:
        raise ValueError(f"unknown scale type {scale_type!r}; known: {SCALE_TYPES}")
    return [float(base(l)) * (e_scale if l < L - 1 else 1.0) for l in range(L)]


def layer_loss_weights(n_layers: int, enabled: Sequence[bool] | None = None, e_scale: float = 1.0,
                       scale_type: str = "sum_l") -> list[float]:
    """ẽ(t, l): curriculum-masked weights normalised to sum to 1.

    If every enabled weight is 0 (e.g. L = 1 under ``sum_l``) the last layer gets weight 1.
    """
    e = loss_scales(n_layers, e_scale, scale_type)
    if enabled is None:
        enabled = [True] * n_layers
    if len(enabled) != n_layers:
        raise ValueError("curriculum mask length != n_layers")
    masked = [w if on else 0.0 for w, on in zip(e, enabled)]
    total = sum(masked)
    if total <= 0.0:
        return [0.0] * (n_layers - 1) + [1.0]
    return [w / total for w in masked]


def _targets(hidden_len: int, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions whose next token is a target (HF convention: labels aligned with inputs)."""
    shifted = labels[:, 1:hidden_len]
    sel = shifted != IGNORE_INDEX
    return sel, shifted[sel]


def early_exit_loss(hiddens: Sequence[torch.Tensor], head: Callable[[torch.Tensor], torch.Tensor],
                    labels: torch.Tensor, weights: Sequence[float]
                    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """Weighted sum of per-layer next-token CE through the shared ``head``.

    ``hiddens[l]`` is the hidden state after layer l (pre final norm), [B, T, D]; ``labels`` is
    [B, T] aligned with the inputs (position t predicts labels[t+1]); -100 is ignored. The head
    runs once, on the target positions of the layers with a non-zero weight only.
    Returns (loss, {layer: detached mean CE}).
    """
    if len(hiddens) != len(weights):
        raise ValueError(f"{len(hiddens)} hidden states but {len(weights)} weights")
    layers = [l for l, w in enumerate(weights) if w != 0.0]
    T = hiddens[0].shape[1]
    sel, tgt = _targets(T, labels)
    n = tgt.numel()
    if n == 0:
        zero = sum(hiddens[l].sum() for l in layers) * 0.0
        return zero, {l: zero.detach() for l in layers}
    h = torch.cat([hiddens[l][:, :-1][sel] for l in layers], dim=0)  # [k·N, D]
    logits = head(h).float()
    ce = F.cross_entropy(logits, tgt.repeat(len(layers)), reduction="none").view(len(layers), n).mean(1)
    w = torch.tensor([weights[l] for l in layers], dtype=ce.dtype, device=ce.device)
    loss = (ce * w).sum()
    return loss, {l: ce[i].detach() for i, l in enumerate(layers)}


@torch.no_grad()
def per_layer_accuracy(hiddens: Sequence[torch.Tensor], head: Callable[[torch.Tensor], torch.Tensor],
                       labels: torch.Tensor) -> tuple[list[int], int]:
    """(correct next-token predictions per layer exit, number of target positions)."""
    T = hiddens[0].shape[1]
    sel, tgt = _targets(T, labels)
    correct = []
    for h in hiddens:
        pred = head(h[:, :-1][sel]).argmax(-1)
        correct.append(int((pred == tgt).sum()))
    return correct, int(tgt.numel())
