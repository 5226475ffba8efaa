"""Reference systems that prove the pipeline without a model.

``oracle`` answers with the reference solution, so a correct pipeline must score
it perfectly; ``wrong`` answers with something that can never be right, so a
correct pipeline must score it zero. Together they catch scorers that always
pass or always fail. ``perturbed`` answers with the ground truth moved by a known
amount, so a test can check the scorer against the official tool on the same
predictions (e.g. COCO AP of boxes shifted by k pixels against pycocotools).

Text tasks are recognised by their reference field (``canonical_solution``,
``semantic_parse``, ``highlights``, ``reference``). Vision tasks by the fields
their adapters put into ``Example.data`` (see each task's docstring):

* ``label`` (ImageNet): ``ClassScores``, the true class first / five wrong classes;
* ``coco_anns`` (+ ``width``, ``height``, ``category_ids``; COCO detection): ``Detections`` of the non-crowd
  ground truth with score 1 and masks converted to RLE / one box in a corner free of ground truth with a
  category the image does not contain;
* ``targets`` (COCO multi-label): ``MultiLabelScores`` 1 for present classes, 0 otherwise / the reverse,
  which ranks every positive last (the lowest mAP possible; AP cannot reach 0 while a class has positives);
* ``annotation_path`` (ADE20k): ``SegmentationMap`` equal to the annotation (index = ADE id - 1, unlabelled
  pixels -1) / every labelled pixel given another class.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from suite.interfaces import (
    ClassScores,
    Detections,
    Example,
    Generation,
    MultiLabelScores,
    OneAtATime,
    RunContext,
    SegmentationMap,
)
from suite.vision import rle as rle_mod
from suite.vision.images import load_label_map

_REFERENCE_FIELDS = ("canonical_solution", "semantic_parse", "highlights", "reference")
_VISION_FIELDS = ("targets", "coco_anns", "annotation_path", "label")
_TOPK = 5
_DEFAULT_CLASSES = 1000


def _fail(system: str, example: Example) -> KeyError:
    return KeyError(f"{system}: example {example.id} has none of the reference fields "
                    f"{_REFERENCE_FIELDS + _VISION_FIELDS}")


def _num_classes(request: Any) -> int:
    return int(getattr(request, "num_classes", None) or _DEFAULT_CLASSES)


# ----------------------------------------------------------------------------- ground truth as outputs


def true_detections(data: Mapping[str, Any]) -> Detections:
    """The image's non-crowd annotations as detections with score 1 (crowd regions are not instances)."""
    anns = [a for a in data["coco_anns"] if not a.get("iscrowd", 0)]
    with_masks = all("segmentation" in a for a in anns)
    masks = ([rle_mod.from_segmentation(a["segmentation"], data["height"], data["width"]) for a in anns]
             if with_masks else None)
    return Detections(boxes=[list(map(float, a["bbox"])) for a in anns], scores=[1.0] * len(anns),
                      labels=[int(a["category_id"]) for a in anns], masks=masks)


def true_segmentation(data: Mapping[str, Any]) -> np.ndarray:
    """The annotation as class indices (ADE id - 1); unlabelled pixels become -1 (no class)."""
    return load_label_map(Path(data["annotation_path"])).astype(np.int64) - 1


def _true_classes(label: int, n: int) -> ClassScores:
    others = [(label + i) % n for i in range(1, _TOPK)]
    return ClassScores(topk=[label] + others, scores=[1.0] + [0.0] * len(others))


def oracle_output(request: Any, example: Example) -> Any:
    d = example.data
    if "targets" in d:
        return MultiLabelScores(scores=[float(t) for t in d["targets"]])
    if "coco_anns" in d:
        return true_detections(d)
    if "annotation_path" in d:
        return SegmentationMap(labels=true_segmentation(d))
    if "label" in d:
        return _true_classes(int(d["label"]), _num_classes(request))
    raise _fail("oracle", example)


# ----------------------------------------------------------------------------- wrong on purpose


def _free_corner(data: Mapping[str, Any], size: float) -> list[float]:
    """A ``size``-pixel box in the first image corner that no ground-truth box touches."""
    w, h = float(data["width"]), float(data["height"])
    corners = [[0.0, 0.0], [w - size, 0.0], [0.0, h - size], [w - size, h - size]]
    boxes = [a["bbox"] for a in data["coco_anns"]]

    def free(x: float, y: float) -> bool:
        return all(x + size <= b[0] or b[0] + b[2] <= x or y + size <= b[1] or b[1] + b[3] <= y for b in boxes)

    x, y = next((c for c in corners if free(*c)), corners[0])
    return [x, y, size, size]


def wrong_detections(data: Mapping[str, Any]) -> Detections:
    present = {int(a["category_id"]) for a in data["coco_anns"]}
    absent = [c for c in data["category_ids"] if c not in present]
    box = _free_corner(data, 4.0)
    return Detections(boxes=[box], scores=[1.0], labels=[absent[0] if absent else int(data["category_ids"][0])],
                      masks=[rle_mod.box_mask(box, data["height"], data["width"])])


def wrong_output(request: Any, example: Example) -> Any:
    d = example.data
    if "targets" in d:
        return MultiLabelScores(scores=[1.0 - float(t) for t in d["targets"]])
    if "coco_anns" in d:
        return wrong_detections(d)
    if "annotation_path" in d:
        gt = load_label_map(Path(d["annotation_path"])).astype(np.int64)
        n = int(getattr(request, "num_classes", None) or 150)
        return SegmentationMap(labels=gt % n)  # ADE id c is index c-1; index c % n is always another class
    if "label" in d:
        n = _num_classes(request)
        label = int(d["label"])
        return ClassScores(topk=[(label + i) % n for i in range(1, _TOPK + 1)], scores=[1.0] * _TOPK)
    raise _fail("wrong", example)


# ----------------------------------------------------------------------------- systems


class OracleSystem(OneAtATime):
    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        self.delay_s = float(params.get("delay_s", 0.0))
        """Artificial latency, used by tests that kill a run mid-way."""

    def identity(self) -> Mapping[str, Any]:
        return {"kind": "oracle"}

    def generate(self, request: Any, example: Example) -> Any:
        if self.delay_s:
            time.sleep(self.delay_s)
        for key in _REFERENCE_FIELDS:
            if key in example.data:
                return Generation(text=example.data[key], stats={"generated_tokens": 0.0})
        return oracle_output(request, example)


class WrongSystem(OneAtATime):
    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        pass

    def identity(self) -> Mapping[str, Any]:
        return {"kind": "wrong"}

    def generate(self, request: Any, example: Example) -> Any:
        if any(key in example.data for key in _REFERENCE_FIELDS) or not any(
                key in example.data for key in _VISION_FIELDS):
            return Generation(text='    raise NotImplementedError("wrong on purpose")\n',
                              stats={"generated_tokens": 0.0})
        return wrong_output(request, example)


def _shift_map(labels: np.ndarray, k: int) -> np.ndarray:
    """The map moved k pixels right and down; the uncovered strip becomes -1 (no class)."""
    out = np.full_like(labels, -1)
    h, w = labels.shape
    if k < h and k < w:
        out[k:, k:] = labels[:h - k, :w - k]
    return out


class PerturbedSystem(OneAtATime):
    """The ground truth moved by ``shift_px`` pixels right and down (boxes, masks, label maps)."""

    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        self.shift_px = int(params.get("shift_px", 8))
        if self.shift_px < 0:
            raise ValueError(f"perturbed: shift_px={self.shift_px} must be >= 0")

    def identity(self) -> Mapping[str, Any]:
        return {"kind": "perturbed", "shift_px": self.shift_px}

    def generate(self, request: Any, example: Example) -> Any:
        d, k = example.data, self.shift_px
        if "coco_anns" in d:
            det = true_detections(d)
            det.boxes = [[b[0] + k, b[1] + k, b[2], b[3]] for b in det.boxes]
            if det.masks is not None:
                det.masks = [rle_mod.shift(m, k, k) for m in det.masks]
            return det
        if "annotation_path" in d:
            return SegmentationMap(labels=_shift_map(true_segmentation(d), k))
        raise ValueError(f"perturbed: example {example.id}: only COCO detection (coco_anns) and ADE20k "
                       f"(annotation_path) examples can be perturbed")
