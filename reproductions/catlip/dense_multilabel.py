"""COCO multi-label classification by fine-tuning the pre-trained ViT with BCE (arXiv 2404.15653 v1, Table 3).

The paper's recipe (Table 7c): full fine-tuning, BCE, AdamW, cosine 1e-5 -> 1e-6 over 10 epochs,
weight decay 0.05, 512 px. corenet's config adds what the paper leaves open, and we follow it:
the BCE is summed over classes and averaged over the batch (``batch_mean``), the classifier on the
CLS feature is freshly initialised, and evaluation resizes the shorter side and takes the center
crop. Labels are the 80 COCO categories in sorted category-id order, so output index i is the
i-th smallest category id (what the ``coco_multilabel`` task expects).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Sequence

import torch
import torch.nn as nn

from .dense_data import CocoImage, crop, multi_hot, shorter_side_image
from .dense_vit import encoder_config, normalize
from .losses import bce_multilabel


@dataclass(frozen=True)
class MultiLabelConfig:
    num_classes: int = 80
    resolution: int = 512
    """Train crop = eval center crop = shorter side (Table 7c: 512)."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class MultiLabelViT(nn.Module):
    def __init__(self, encoder: nn.Module, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.width, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, S, S) -> logits (N, K)."""
        return self.head(self.encoder(images))


def multilabel_item(image: CocoImage, category_ids: Sequence[int], resolution: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """(uint8 image with its shorter side = resolution, multi-hot target in sorted category-id order)."""
    return shorter_side_image(image.path, resolution), multi_hot(image, category_ids)


def _random_crop(image: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    h, w = image.shape[-2:]
    top = int(torch.randint(0, h - size + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - size + 1, (1,), generator=gen))
    out = crop(image, size, top, left)
    return out.flip(-1) if bool(torch.rand(1, generator=gen) < 0.5) else out


def multilabel_step_loss(resolution: int, device: str):
    """Random crop of the shorter-side-resized image + horizontal flip, BCE summed over classes / batch."""

    def step(model: nn.Module, batch: list[tuple[torch.Tensor, torch.Tensor]], gen: torch.Generator) -> torch.Tensor:
        core = model.module if hasattr(model, "module") else model
        cfg = encoder_config(core.encoder)
        images = torch.stack([_random_crop(im, resolution, gen) for im, _ in batch]).to(device)
        targets = torch.stack([t for _, t in batch]).to(device)
        return bce_multilabel(model(normalize(images, cfg)), targets, "batch_mean")

    return step
