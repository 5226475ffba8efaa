"""COCO box and mask AP with pycocotools' own COCOeval, quietly, from results rows held in memory.

pycocotools does the matching and averaging; this module only builds its inputs: the ground truth
restricted to the evaluated images (each bootstrap copy of an image becomes its own image), and the
results through ``COCO.loadRes`` exactly as a results file would go, except that an empty result list
(which ``loadRes`` cannot take) gives an empty results set. For mask AP the rows lose their ``bbox`` first,
so the detection's area is its mask area, as in a segm-only results file.
"""
from __future__ import annotations

import contextlib
import copy
import io
from typing import Any, Mapping, Sequence

from suite.vision.coco import CocoIndex

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
"""The first six ``COCOeval.stats``: AP@[.5:.95], AP@.5, AP@.75, AP small/medium/large (100 detections)."""


def _quiet():
    return contextlib.redirect_stdout(io.StringIO())


def build_gt(index: CocoIndex, image_ids: Sequence[int], new_ids: Sequence[int] | None = None) -> Any:
    """A ``COCO`` object holding only ``image_ids``; with ``new_ids``, image k is renamed ``new_ids[k]``
    (a bootstrap sample holds an image twice, and each copy must be its own image)."""
    from pycocotools.coco import COCO

    new_ids = list(image_ids) if new_ids is None else list(new_ids)
    images, anns = [], []
    for old, new in zip(image_ids, new_ids):
        images.append({**index.images[old], "id": new})
        for a in index.anns_by_image[old]:
            # copies: COCOeval writes into ground-truth dicts (ignore flags, masks), never into the cached index
            anns.append({**a, "image_id": new, "id": len(anns) + 1} if new != old else dict(a))
    dataset = {"info": index.dataset.get("info", {}), "licenses": index.dataset.get("licenses", []),
               "images": images, "annotations": anns, "categories": index.dataset["categories"]}
    gt = COCO()
    gt.dataset = dataset
    with _quiet():
        gt.createIndex()
    return gt


def _results(gt: Any, rows: list[dict[str, Any]]) -> Any:
    from pycocotools.coco import COCO

    if rows:
        with _quiet():
            return gt.loadRes(rows)
    empty = COCO()
    empty.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"]),
                     "annotations": []}
    with _quiet():
        empty.createIndex()
    return empty


def evaluate(gt: Any, rows: Sequence[Mapping[str, Any]], iou_type: str) -> dict[str, float]:
    """``{AP, AP50, ...}`` for ``iou_type`` "bbox" or "segm"; a stat COCOeval leaves undefined (-1: no
    ground truth in that size range) is left out rather than reported as a number."""
    from pycocotools.cocoeval import COCOeval

    if iou_type == "segm":
        rows = [{k: v for k, v in r.items() if k != "bbox"} for r in rows]
    else:
        rows = [{k: v for k, v in r.items() if k != "segmentation"} for r in rows]
    dt = _results(gt, [dict(r) for r in rows])
    ev = COCOeval(gt, dt, iou_type)
    ev.params.imgIds = sorted(gt.getImgIds())
    with _quiet():
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:6]) if v >= 0}
