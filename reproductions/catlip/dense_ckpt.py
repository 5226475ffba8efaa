"""Dense transfer checkpoints: ``model.safetensors`` (encoder + head) and ``config.json`` (how to rebuild it).

Why self-contained: a system loads a dense model from its folder alone (the run only knows an
alias such as ``catlip-maskrcnn``), so the config holds the encoder architecture, the head's
hyper-parameters, the label space, and where the encoder came from (alias + sha256), which the
system's ``identity()`` reports.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch.nn as nn

from suite.records import read_json, write_json_atomic

from .dense_vit import encoder_config, rebuild_encoder

DENSE_FORMAT = "catlip-dense/1"
KINDS = ("multilabel", "maskrcnn", "deeplabv3")
WEIGHTS, CONFIG = "model.safetensors", "config.json"


class DenseCheckpointError(ValueError):
    """A dense checkpoint folder that cannot be loaded; the message names the file and field."""


@dataclass
class DenseModel:
    kind: str
    model: nn.Module
    config: dict[str, Any]
    backend: Any = None
    """The detector backend (Mask R-CNN only)."""


def build_head(kind: str, encoder: nn.Module, head: dict[str, Any]) -> DenseModel:
    """The dense model for ``kind`` on ``encoder`` (randomly initialised head)."""
    if kind == "multilabel":
        from .dense_multilabel import MultiLabelViT
        return DenseModel(kind, MultiLabelViT(encoder, int(head["num_classes"])), {})
    if kind == "maskrcnn":
        from .dense_detection import DetectorConfig, get_backend
        cfg = DetectorConfig.from_json(head)
        backend = get_backend(cfg.backend)
        return DenseModel(kind, backend.build(encoder, cfg), {}, backend)
    if kind == "deeplabv3":
        from .dense_segmentation import DeepLabViT, SegConfig
        return DenseModel(kind, DeepLabViT(encoder, SegConfig.from_json(head)), {})
    raise DenseCheckpointError(f"unknown dense model kind {kind!r} (known: {', '.join(KINDS)})")


def new_dense(kind: str, encoder: nn.Module, head: dict[str, Any], labels: dict[str, Any],
              source: dict[str, Any]) -> DenseModel:
    dm = build_head(kind, encoder, head)
    dm.config = {"format": DENSE_FORMAT, "kind": kind, "encoder": encoder_config(encoder).to_json(), "head": head,
                 "labels": labels, "source": source}
    return dm


def save_dense(out_dir: Path, dm: DenseModel, training: dict[str, Any]) -> Path:
    """Weights first, config last: a folder with a config.json is complete."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in dm.model.state_dict().items()}
    save_file(sd, str(out / (WEIGHTS + ".tmp")), metadata={"format": DENSE_FORMAT, "kind": dm.kind})
    (out / (WEIGHTS + ".tmp")).replace(out / WEIGHTS)
    write_json_atomic(out / CONFIG, {**dm.config, "training": training})
    return out


def load_dense(ckpt_dir: Path, device: str = "cpu") -> DenseModel:
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    cfg_path = ckpt_dir / CONFIG
    if not cfg_path.is_file():
        raise DenseCheckpointError(f"{cfg_path}: not found (a dense checkpoint is a folder with {CONFIG} + {WEIGHTS})")
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict) or cfg.get("format") != DENSE_FORMAT:
        raise DenseCheckpointError(f"{cfg_path}: field 'format': expected {DENSE_FORMAT!r}")
    for key in ("kind", "encoder", "head", "labels"):
        if key not in cfg:
            raise DenseCheckpointError(f"{cfg_path}: missing the field {key!r}")
    dm = build_head(cfg["kind"], rebuild_encoder(cfg["encoder"], f"{cfg_path}: encoder"), cfg["head"])
    try:
        dm.model.load_state_dict(load_file(str(ckpt_dir / WEIGHTS)))
    except (RuntimeError, FileNotFoundError) as e:
        raise DenseCheckpointError(f"{ckpt_dir / WEIGHTS}: does not fit {CONFIG} ({str(e).splitlines()[0]})") from e
    dm.config = cfg
    dm.model.to(device).eval()
    return dm


def checkpoint_sha256(ckpt_dir: Path) -> str:
    """sha256 over weights and config: what a run's identity pins."""
    h = hashlib.sha256()
    for name in (WEIGHTS, CONFIG):
        with open(Path(ckpt_dir) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
