"""DeepLabv3 on the pre-trained ViT for ADE20k semantic segmentation (arXiv 2404.15653 v1, Table 4).

The paper names the head (DeepLabv3) and the recipe (Table 8a: AdamW, cosine 3e-5 -> 3e-6, 50
epochs, weight decay 0.1, 512x512 crops, random short-side resize, crop, flip, CE loss); corenet's
config fills in the head: output stride 8, ASPP rates 12/24/36 with 512 channels, dropout 0.1, and
CE ignoring unlabelled pixels. A ViT has one stride (its patch), so a patch-16 map is brought to
stride 8 with transposed convs (the same block as the detection pyramid) before the ASPP; a
patch-8 map is used as is. Logits are upsampled bilinearly to the input size.

Labels: ADE20k annotation ids 1..150 are classes 0..149; id 0 ("other") is ignored (-1).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from .dense_data import SegPair, load_seg_pair
from .dense_detection import rescale_block
from .dense_vit import encoder_config, normalize

IGNORE = -1


@dataclass(frozen=True)
class SegConfig:
    num_classes: int = 150
    crop: int = 512
    aspp_channels: int = 512
    atrous_rates: tuple[int, ...] = (12, 24, 36)
    output_stride: int = 8
    dropout: float = 0.1
    short_side_range: tuple[int, int] = (256, 768)
    """Training: random shorter side in this range, then a random ``crop`` x ``crop`` window (Table 8a)."""
    eval_short_side: int = 512

    def to_json(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SegConfig":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()})


class DeepLabViT(nn.Module):
    def __init__(self, encoder: nn.Module, cfg: SegConfig):
        from torchvision.models.segmentation.deeplabv3 import ASPP

        super().__init__()
        self.encoder, self.cfg = encoder, cfg
        self.up, ch = rescale_block(encoder.width, encoder.patch_size / cfg.output_stride)
        c = cfg.aspp_channels
        self.head = nn.Sequential(ASPP(ch, list(cfg.atrous_rates), c), nn.Conv2d(c, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU(), nn.Dropout(cfg.dropout), nn.Conv2d(c, cfg.num_classes, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W), H and W multiples of the patch -> logits (N, K, H, W)."""
        logits = self.head(self.up(self.encoder.feature_map(images)))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def pad_to_multiple(x: torch.Tensor, multiple: int, value: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def pad_to_at_least(x: torch.Tensor, size: int, value: float) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = max(0, size - h), max(0, size - w)
    return F.pad(x, (0, pw, 0, ph), value=value) if ph or pw else x


def _train_sample(pair: SegPair, cfg: SegConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    lo, hi = cfg.short_side_range
    image, label = load_seg_pair(pair, int(torch.randint(lo, hi + 1, (1,), generator=gen)))
    image, label = pad_to_at_least(image, cfg.crop, 0), pad_to_at_least(label, cfg.crop, IGNORE)
    h, w = label.shape
    top = int(torch.randint(0, h - cfg.crop + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - cfg.crop + 1, (1,), generator=gen))
    image = image[:, top:top + cfg.crop, left:left + cfg.crop]
    label = label[top:top + cfg.crop, left:left + cfg.crop]
    if bool(torch.rand(1, generator=gen) < 0.5):
        image, label = image.flip(-1), label.flip(-1)
    return image, label


def seg_step_loss(cfg: SegConfig, device: str):
    def step(model: nn.Module, batch: list[SegPair], gen: torch.Generator) -> torch.Tensor:
        core = model.module if hasattr(model, "module") else model
        samples = [_train_sample(p, cfg, gen) for p in batch]
        images = normalize(torch.stack([s[0] for s in samples]).to(device), encoder_config(core.encoder))
        labels = torch.stack([s[1] for s in samples]).to(device)
        return F.cross_entropy(model(images), labels, ignore_index=IGNORE)

    return step


@torch.no_grad()
def segment(model: DeepLabViT, image: torch.Tensor, device: str, out_size: tuple[int, int] | None = None
            ) -> torch.Tensor:
    """uint8 (3, H, W) -> class map (int64) at ``out_size`` (default: the image's): shorter side to
    ``eval_short_side``, padded to the patch, logits cropped and resized back (0..K-1 = ADE ids 1..K)."""
    cfg, p = model.cfg, model.encoder.patch_size
    h, w = image.shape[-2:]
    s = cfg.eval_short_side / min(h, w)
    size = (max(1, round(h * s)), max(1, round(w * s)))
    x = F.interpolate(image[None].float(), size=size, mode="bilinear", align_corners=False)
    x = normalize(x / 255.0, encoder_config(model.encoder)).to(device)
    logits = model(pad_to_multiple(x, p, 0.0))[..., :size[0], :size[1]]
    logits = F.interpolate(logits, size=out_size or (h, w), mode="bilinear", align_corners=False)
    return logits[0].argmax(0).cpu()

