"""The pre-trained encoder as seen by the dense heads: its config travels with every dense checkpoint.

Why: a dense checkpoint (multi-label, Mask R-CNN, DeepLabv3) holds the fine-tuned encoder too, so
it must rebuild that encoder without the pre-training folder it started from. We store the
encoder's own ``EncoderConfig`` (architecture, stem, input mean/std, position-embedding rule) in
the dense ``config.json`` and rebuild through ``models.build_from_config``; the encoder's
``feature_map``/``forward`` already accept any input size that is a multiple of the patch.

Layer-wise LR decay (ViTDet, Table 8b of arXiv 2404.15653 v1: 0.7 for B/16) needs each encoder
parameter's depth, which is also defined here.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from .models import EncoderConfig, ViTBackbone, build_from_config


def encoder_config(enc: nn.Module) -> EncoderConfig:
    """The config of a loaded encoder (``load_encoder`` sets it), or one read off its modules."""
    cfg = getattr(enc, "config", None)
    if isinstance(cfg, EncoderConfig):
        return cfg
    block = enc.encoder.layers[0]
    return EncoderConfig("custom", int(enc.image_size), int(enc.patch_size), len(enc.encoder.layers),
                         int(block.self_attention.num_heads), int(enc.hidden_dim), int(enc.mlp_dim))


def rebuild_encoder(cfg_json: dict[str, Any], where: str) -> ViTBackbone:
    """A fresh encoder with the stored architecture (weights come from the dense checkpoint)."""
    cfg = EncoderConfig.from_json(cfg_json, where)
    enc = build_from_config(cfg)
    enc.config = cfg
    return enc


def layer_id(name: str, num_layers: int) -> int:
    """Depth of an encoder parameter: 0 = stem/pos/CLS, i+1 = block i, L+1 = anything after the blocks."""
    if name.startswith(("encoder.pos_embedding", "class_token", "conv_proj")):
        return 0
    if name.startswith("encoder.layers."):
        return int(name.split(".")[2].rsplit("_", 1)[-1]) + 1
    return num_layers + 1


def param_groups(model: nn.Module, encoder_prefix: str, num_layers: int, lr: float, weight_decay: float,
                 layer_decay: float | None) -> list[dict[str, Any]]:
    """AdamW groups: no decay on biases/norms/embeddings; encoder LR scaled by layer_decay^(L+1-depth)."""
    groups: dict[tuple[float, float], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        in_enc = name.startswith(encoder_prefix)
        depth = layer_id(name[len(encoder_prefix):], num_layers) if in_enc else num_layers + 1
        scale = (layer_decay ** (num_layers + 1 - depth)) if layer_decay else 1.0
        no_wd = p.ndim <= 1 or name.endswith(("pos_embedding", "class_token"))
        groups.setdefault((scale, 0.0 if no_wd else weight_decay), []).append(p)
    return [{"params": ps, "lr": lr * s, "lr_scale": s, "weight_decay": wd} for (s, wd), ps in groups.items()]


def normalize(images: torch.Tensor, cfg: EncoderConfig) -> torch.Tensor:
    """uint8 or [0, 1] float (N, 3, H, W) -> the normalisation the encoder was trained with."""
    x = images.float() / 255.0 if images.dtype == torch.uint8 else images
    mean = torch.tensor(cfg.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
