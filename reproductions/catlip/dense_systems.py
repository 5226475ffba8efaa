"""Systems that answer the suite's vision tasks with the dense CatLIP/CLIP transfer models (Tables 3-5).

Each system is built from a run's ``model`` parameter (an alias the prepare step returned, e.g.
``catlip-maskrcnn``, or a checkpoint folder), decodes the requested image itself, and returns the
structured output its task scores: ``MultiLabelScores`` over the 80 COCO classes in sorted
category-id order, ``Detections`` in original image coordinates with COCO category ids and RLE
masks, or a ``SegmentationMap`` at the annotation's resolution. ``identity()`` pins the checkpoint
by sha256 so a retrained model never reuses another model's records.
"""
from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from suite.devices import torch_dtype
from suite.interfaces import Detections, Example, MultiLabelScores, RunContext, SegmentationMap

from .dense_ckpt import DenseModel, checkpoint_sha256, load_dense
from .dense_data import center_crop, load_rgb, shorter_side_image
from .dense_vit import encoder_config, normalize


class SystemConfigError(ValueError):
    """A system parameter that cannot be used; the message names the parameter."""


def resolve_model(params: Mapping[str, Any], artifacts: Mapping[str, Path], system: str) -> tuple[str, Path]:
    """``model`` = an alias from the prepare step or a checkpoint folder."""
    name = params.get("model")
    if not name:
        raise SystemConfigError(f"{system}: the parameter 'model' is required (an alias such as catlip-maskrcnn, "
                                f"or a checkpoint folder)")
    if name in artifacts:
        return str(name), Path(artifacts[name])
    if Path(str(name)).is_dir():
        return str(name), Path(str(name))
    known = ", ".join(sorted(artifacts)) or "none: run the paper's prepare step (repro reproduce catlip)"
    raise SystemConfigError(f"{system}: model={name!r} is neither a prepared alias ({known}) nor a folder")


class _DenseSystem:
    kind = ""

    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        extra = set(params) - {"model"}
        if extra:
            raise SystemConfigError(f"{type(self).__name__}: unknown parameter(s) {sorted(extra)} (known: ['model'])")
        self.name, self.path = resolve_model(params, ctx.artifacts, type(self).__name__)
        self.device, self.dtype = ctx.device, ctx.dtype
        self.dm: DenseModel = load_dense(self.path, self.device)
        if self.dm.kind != self.kind:
            raise SystemConfigError(f"{type(self).__name__}: model={self.name!r} is a {self.dm.kind} checkpoint, "
                                    f"expected {self.kind}")
        self.labels = self.dm.config["labels"]

    def identity(self) -> dict[str, Any]:
        return {"model": self.name, "kind": self.kind, "sha256": checkpoint_sha256(self.path),
                "encoder": self.dm.config.get("source", {})}

    def _autocast(self) -> Any:
        if self.dtype == "float32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(self.device).type, dtype=torch_dtype(self.dtype))

    def _check_classes(self, requests: Sequence[Any], n: int) -> None:
        for r in requests:
            if r.num_classes is not None and r.num_classes != n:
                raise SystemConfigError(f"{type(self).__name__}: model={self.name!r} predicts {n} classes, the task "
                                        f"asks for {r.num_classes}")


class CatlipMultiLabel(_DenseSystem):
    """COCO multi-label (Table 3): sigmoid scores; shorter side resized and center-cropped to the task's
    ``resize``/``crop`` when it states them, else to the fine-tuning resolution (corenet: 512 at both)."""

    kind = "multilabel"

    @torch.no_grad()
    def predict(self, requests: Sequence[Any], examples: Sequence[Example]) -> list[MultiLabelScores]:
        res = int(self.dm.config["head"]["resolution"])
        self._check_classes(requests, int(self.dm.config["head"]["num_classes"]))
        t0 = time.perf_counter()
        images = torch.stack([center_crop(shorter_side_image(Path(r.path), r.resize or res),
                                          r.crop or r.resize or res)
                              for r in requests])
        x = normalize(images.to(self.device), encoder_config(self.dm.model.encoder))
        with self._autocast():
            probs = torch.sigmoid(self.dm.model(x).float()).cpu()
        ms = 1e3 * (time.perf_counter() - t0) / len(requests)
        return [MultiLabelScores([float(v) for v in p], stats={"ms_per_image": ms}) for p in probs]


class CatlipDetector(_DenseSystem):
    """COCO detection + instance segmentation (Table 5): boxes ``[x, y, w, h]`` and RLE masks at the image's size."""

    kind = "maskrcnn"

    @torch.no_grad()
    def predict(self, requests: Sequence[Any], examples: Sequence[Example]) -> list[Detections]:
        from suite.vision import rle

        cat_ids = self.labels["category_ids"]
        self._check_classes(requests, len(cat_ids))
        t0 = time.perf_counter()
        images = [load_rgb(Path(r.path)).float().div(255.0).to(self.device) for r in requests]
        with self._autocast():
            raw = self.dm.backend.predict(self.dm.model, images)
        ms = 1e3 * (time.perf_counter() - t0) / len(requests)
        out = []
        for det in raw:
            b = det.boxes.float().cpu()
            xywh = torch.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], dim=1) if len(b) else b
            masks = [rle.encode(m.cpu().numpy()) for m in det.masks]
            out.append(Detections(boxes=xywh.tolist(), scores=det.scores.float().cpu().tolist(),
                                  labels=[int(cat_ids[int(c) - 1]) for c in det.labels.cpu()], masks=masks,
                                  stats={"ms_per_image": ms, "n_detections": float(len(b))}))
        return out


class CatlipSegmenter(_DenseSystem):
    """ADE20k semantic segmentation (Table 4): a class map at the image's own size, in the task's 150-class space."""

    kind = "deeplabv3"

    @torch.no_grad()
    def predict(self, requests: Sequence[Any], examples: Sequence[Example]) -> list[SegmentationMap]:
        from .dense_segmentation import segment

        self._check_classes(requests, int(self.dm.config["head"]["num_classes"]))
        out = []
        for r in requests:
            t0 = time.perf_counter()
            with self._autocast():
                size = (r.height, r.width) if r.height and r.width else None
                labels = segment(self.dm.model, load_rgb(Path(r.path)), self.device, size)
            out.append(SegmentationMap(labels.numpy(), stats={"ms_per_image": 1e3 * (time.perf_counter() - t0)}))
        return out
