"""Losses: CatLIP's multi-label BCE and CLIP's symmetric contrastive loss.

Why ``batch_mean`` is the default: corenet's ``binary_cross_entropy`` with
``reduction: batch_mean`` sums the per-class terms and divides by the batch
size only. With a 24k-way vocabulary that is ~24k x larger than PyTorch's
default ``mean`` and is what gives the paper's Fig. 8 loss values of 15-20.
The learning rates of Table 6 were tuned with that scale, so switching the
reduction silently changes the effective LR; we keep both and make it explicit.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

LOGIT_SCALE_MAX = 100.0


def bce_multilabel(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "batch_mean") -> torch.Tensor:
    logits = logits.float()
    targets = targets.to(logits.dtype)
    if reduction == "batch_mean":
        return F.binary_cross_entropy_with_logits(logits, targets, reduction="sum") / logits.shape[0]
    if reduction in ("mean", "sum"):
        return F.binary_cross_entropy_with_logits(logits, targets, reduction=reduction)
    raise ValueError(f"reduction must be 'batch_mean', 'mean' or 'sum', got {reduction!r}")


def clip_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy over the in-batch
    similarity matrix; ``logit_scale`` is the log temperature, exp clamped at 100."""
    img = F.normalize(image_emb.float(), dim=-1)
    txt = F.normalize(text_emb.float(), dim=-1)
    scale = logit_scale.float().exp().clamp(max=LOGIT_SCALE_MAX)
    logits = scale * img @ txt.t()
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))
