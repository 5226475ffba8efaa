"""COCO run-length encodings: from any annotation form to compressed RLE, to and from JSON, and shifts.

A COCO ``segmentation`` is a list of polygons, an uncompressed RLE (``counts`` a list of ints, used for
crowd regions) or a compressed RLE (``counts`` a string). Detections and run records always carry the
compressed form with ``counts`` as a ``str`` (what COCO results files hold), so one converter here is the
only place that knows all three.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from pycocotools import mask as mask_utils

Rle = dict[str, Any]
"""``{"size": [h, w], "counts": str}`` (JSON form) or ``bytes`` counts (pycocotools' native form)."""


def to_json(rle: Mapping[str, Any]) -> Rle:
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def to_native(rle: Mapping[str, Any]) -> Rle:
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def from_segmentation(segmentation: Any, height: int, width: int) -> Rle:
    """Compressed RLE (JSON form) of a COCO ``segmentation`` in any of its three forms."""
    if isinstance(segmentation, list):  # polygons: one RLE per polygon, merged into one mask
        polys = [p for p in segmentation if len(p) >= 6]
        if not polys:
            return encode(np.zeros((height, width), dtype=np.uint8))
        return to_json(mask_utils.merge(mask_utils.frPyObjects(polys, height, width)))
    if isinstance(segmentation, Mapping) and isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        return to_json(mask_utils.frPyObjects(dict(segmentation), height, width))
    if isinstance(segmentation, Mapping) and "counts" in segmentation:
        return to_json(segmentation)
    raise ValueError(f"not a COCO segmentation (polygons or RLE): {str(segmentation)[:80]}")


def encode(mask: np.ndarray) -> Rle:
    """Compressed RLE (JSON form) of a binary (H, W) mask."""
    return to_json(mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8))))


def decode(rle: Mapping[str, Any]) -> np.ndarray:
    """The (H, W) uint8 mask of a compressed RLE."""
    return mask_utils.decode(to_native(rle))


def area(rle: Mapping[str, Any]) -> float:
    return float(mask_utils.area(to_native(rle)))


def shift(rle: Mapping[str, Any], dx: int, dy: int) -> Rle:
    """The mask moved by (dx, dy) pixels inside the same canvas; what leaves the image is cut off."""
    m = decode(rle)
    h, w = m.shape
    out = np.zeros_like(m)
    if abs(dx) >= w or abs(dy) >= h:
        return encode(out)
    src = m[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
    out[max(0, dy):max(0, dy) + src.shape[0], max(0, dx):max(0, dx) + src.shape[1]] = src
    return encode(out)


def box_mask(box: list[float], height: int, width: int) -> Rle:
    """The mask of an axis-aligned ``[x, y, w, h]`` box (for box-only masks such as the wrong system's)."""
    m = np.zeros((height, width), dtype=np.uint8)
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[0] + box[2]))), min(height, int(np.ceil(box[1] + box[3])))
    m[y0:y1, x0:x1] = 1
    return encode(m)
