"""Released CatLIP checkpoints (apple/corenet ``.pt`` files) mapped onto our ViT.

corenet's ViT differs from torchvision's in layout, not in what it computes, with three exceptions that our
:class:`~reproductions.catlip.models.ViTBackbone` reproduces through its config:

* the patch embedding is a 3-conv stem (k4/s4 with padding 1, BN, GELU; k2/s2, BN, GELU; k2/s2 with bias)
  instead of one 16x16 conv -> ``stem: corenet-conv3``;
* the positional embedding (196 positions, no CLS slot) is added to the patch tokens only -> mapped into the
  patch part of torchvision's ``(1, 1 + N, D)`` embedding, with a zero CLS slot;
* at other resolutions corenet resizes the *flattened* position sequence (bilinear over the sequence axis)
  -> ``pos_interp: sequence-bilinear``.

Keys (corenet, one transformer block ``i``; flash attention names its output projection ``out_proj_attn``,
the plain one ``out_proj``) -> ours (torchvision):

  patch_emb.0.block.conv / .norm   -> conv_proj.0 / conv_proj.1      (BN: weight, bias, running stats)
  patch_emb.1.block.conv / .norm   -> conv_proj.3 / conv_proj.4
  patch_emb.2.block.conv           -> conv_proj.6
  cls_token                        -> class_token
  pos_embed.pos_embed.pos_embed    -> encoder.pos_embedding[:, 1:]
  transformer.i.pre_norm_mha.0     -> encoder.layers.encoder_layer_i.ln_1
  transformer.i.pre_norm_mha.1.qkv_proj       -> ...self_attention.in_proj_weight / in_proj_bias
  transformer.i.pre_norm_mha.1.out_proj(_attn) -> ...self_attention.out_proj
  transformer.i.pre_norm_ffn.0 / .1 / .4      -> ln_2 / mlp.0 / mlp.3
  post_transformer_norm            -> encoder.ln
  classifier                       -> the head (pre-training: 24,320 synsets; fine-tuned: the task's classes)

RangeAugment's ``neural_augmentor.*`` parameters (training-time augmentation) are dropped; any other unknown
key is an error naming it. Inputs are [0, 1] pixels without mean/std normalisation, as corenet feeds them.
Files load only with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from .models import EncoderConfig, save_encoder

CORENET_PRESETS = {  # corenet config/vit.py: width -> (name, layers, heads, ffn)
    768: ("base", 12, 12, 3072),
    1024: ("large", 24, 16, 4096),
    1280: ("huge", 32, 20, 5120),
}
DROPPED_PREFIXES = ("neural_augmentor.",)
_BLOCK = re.compile(r"^transformer\.(\d+)\.(.+)$")
_BLOCK_MAP = {
    "pre_norm_mha.0.weight": "ln_1.weight", "pre_norm_mha.0.bias": "ln_1.bias",
    "pre_norm_mha.1.qkv_proj.weight": "self_attention.in_proj_weight",
    "pre_norm_mha.1.qkv_proj.bias": "self_attention.in_proj_bias",
    "pre_norm_mha.1.out_proj_attn.weight": "self_attention.out_proj.weight",
    "pre_norm_mha.1.out_proj_attn.bias": "self_attention.out_proj.bias",
    "pre_norm_mha.1.out_proj.weight": "self_attention.out_proj.weight",
    "pre_norm_mha.1.out_proj.bias": "self_attention.out_proj.bias",
    "pre_norm_ffn.0.weight": "ln_2.weight", "pre_norm_ffn.0.bias": "ln_2.bias",
    "pre_norm_ffn.1.weight": "mlp.0.weight", "pre_norm_ffn.1.bias": "mlp.0.bias",
    "pre_norm_ffn.4.weight": "mlp.3.weight", "pre_norm_ffn.4.bias": "mlp.3.bias",
}
_STEM_MAP = {"patch_emb.0.block.conv.": "conv_proj.0.", "patch_emb.0.block.norm.": "conv_proj.1.",
             "patch_emb.1.block.conv.": "conv_proj.3.", "patch_emb.1.block.norm.": "conv_proj.4.",
             "patch_emb.2.block.conv.": "conv_proj.6."}
_TOP_MAP = {"cls_token": "class_token", "post_transformer_norm.weight": "encoder.ln.weight",
            "post_transformer_norm.bias": "encoder.ln.bias"}


class CorenetCheckpointError(ValueError):
    pass


@dataclass
class Mapped:
    encoder: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] | None
    config: EncoderConfig


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A corenet ``.pt``: a bare state dict, or one under ``model``/``state_dict``; ``module.`` prefixes (DDP)
    removed."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: corenet checkpoint not found") from None
    except Exception as e:  # a pickle that needs code to load is not a weights file we accept
        raise CorenetCheckpointError(f"{path}: not loadable as weights only ({type(e).__name__}: {e})") from None
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorenetCheckpointError(f"{path}: expected a state dict of tensors")
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def map_state_dict(sd: Mapping[str, torch.Tensor], where: str = "checkpoint", name: str = "corenet") -> Mapped:
    """corenet ViT keys -> our ViTBackbone keys (+ the classifier); preset inferred from the tensor shapes."""
    if "pos_embed.pos_embed.pos_embed" not in sd or "cls_token" not in sd:
        raise CorenetCheckpointError(f"{where}: not a corenet ViT with a CLS token (no pos_embed.pos_embed.pos_embed "
                                     f"or cls_token)")
    pos = sd["pos_embed.pos_embed.pos_embed"]
    width = int(pos.shape[-1])
    if width not in CORENET_PRESETS:
        raise CorenetCheckpointError(f"{where}: width {width} is not a corenet ViT preset ({sorted(CORENET_PRESETS)})")
    preset, layers, heads, ffn = CORENET_PRESETS[width]
    n_blocks = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK.match(k)))
    if n_blocks != layers:
        raise CorenetCheckpointError(f"{where}: {n_blocks} transformer blocks, but ViT-{preset} has {layers}")
    grid = int(round(pos.shape[-2] ** 0.5))
    if grid * grid != pos.shape[-2]:
        raise CorenetCheckpointError(f"{where}: {pos.shape[-2]} positions are not a square grid")
    out: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    unknown = []
    for k, v in sd.items():
        if k.startswith(DROPPED_PREFIXES):
            continue
        if k == "pos_embed.pos_embed.pos_embed":
            out["encoder.pos_embedding"] = torch.cat([torch.zeros(1, 1, width, dtype=v.dtype), v.reshape(1, -1, width)],
                                                     dim=1)
        elif k in _TOP_MAP:
            out[_TOP_MAP[k]] = v
        elif k.startswith("classifier."):
            head[k[len("classifier."):]] = v
        elif (m := _BLOCK.match(k)) and m.group(2) in _BLOCK_MAP:
            out[f"encoder.layers.encoder_layer_{m.group(1)}.{_BLOCK_MAP[m.group(2)]}"] = v
        elif (prefix := next((p for p in _STEM_MAP if k.startswith(p)), None)) is not None:
            out[_STEM_MAP[prefix] + k[len(prefix):]] = v
        else:
            unknown.append(k)
    if unknown:
        raise CorenetCheckpointError(f"{where}: unexpected key(s) {unknown[:5]} (not a corenet classification ViT?)")
    cfg = EncoderConfig(encoder=f"corenet-vit-{preset}", image_size=16 * grid, patch=16, layers=layers, heads=heads,
                        width=width, mlp=ffn, method="corenet", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                        stem="corenet-conv3", pos_interp="sequence-bilinear", extra={"source": name})
    return Mapped(out, head or None, cfg)


def convert(path: Path, out_dir: Path, name: str | None = None) -> tuple[Path, dict[str, torch.Tensor] | None]:
    """Write a corenet ``.pt`` as our encoder folder (``models.load_encoder``); returns it and the classifier
    tensors. The mapped model is built and loaded strictly, so a layout mismatch fails here, not at evaluation."""
    from .models import build_from_config

    sd = read_state_dict(path)
    mapped = map_state_dict(sd, str(path), name or Path(path).name)
    model = build_from_config(mapped.config)
    missing, unexpected = model.load_state_dict(mapped.encoder, strict=False)
    if missing or unexpected:
        raise CorenetCheckpointError(f"{path}: mapped weights do not fill our ViT (missing {sorted(missing)[:3]}, "
                                     f"unexpected {sorted(unexpected)[:3]})")
    model.config = mapped.config
    save_encoder(model, mapped.config, out_dir)
    return Path(out_dir), mapped.head
