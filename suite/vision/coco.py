"""Loading a COCO instances JSON once, checked, with one-line errors that name the file and the field.

The official files load fine; files found in the wild lack ``info`` or ``licenses`` (some pycocotools
versions' ``loadRes`` copies them and fails), omit ``area`` or ``iscrowd``, or hold annotations whose
image is not listed. This module fills the harmless gaps (``info``/``licenses`` empty, ``iscrowd`` 0,
``area`` from the segmentation) and refuses the rest, so COCOeval never sees an inconsistent file.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from suite.vision import rle as rle_mod


class CocoFormatError(ValueError):
    """The annotation file is not a usable COCO instances file; the message names the file and field."""


@dataclass
class CocoIndex:
    """A validated COCO instances file: images in file order, annotations per image, categories by id."""

    path: Path
    dataset: dict[str, Any]
    """The whole file as a dict with the gaps filled, ready for ``pycocotools.coco.COCO``."""
    images: dict[int, dict[str, Any]] = field(default_factory=dict)
    anns_by_image: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    cat_ids: list[int] = field(default_factory=list)
    """Category ids, sorted: the order of the 80 COCO classes in multi-label scores."""
    has_segmentation: bool = True
    """Every annotation has a ``segmentation`` (else mask AP cannot be computed)."""


def read_json_file(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: annotation file not found") from e
    except json.JSONDecodeError as e:
        raise CocoFormatError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from e
    except UnicodeDecodeError as e:
        raise CocoFormatError(f"{path}: not UTF-8 text ({e.reason})") from e


def _need(path: Path, where: str, obj: Any, key: str, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise CocoFormatError(f"{path}: {where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise CocoFormatError(f"{path}: {where}.{key}: expected {getattr(kind, '__name__', kind)}, "
                              f"got {type(value).__name__}")
    return value


def load_instances(path: Path) -> CocoIndex:
    """Parse and check ``path``; every problem is a ``CocoFormatError`` naming the file and the field."""
    path = Path(path)
    data = read_json_file(path)
    if not isinstance(data, dict):
        raise CocoFormatError(f"{path}: expected a JSON object with images/annotations/categories, "
                              f"got {type(data).__name__}")
    for key in ("images", "annotations", "categories"):
        _need(path, "top level", data, key, list)
    data.setdefault("info", {})
    data.setdefault("licenses", [])
    idx = CocoIndex(path=path, dataset=data)
    _index_categories(idx, data["categories"])
    _index_images(idx, data["images"])
    _index_annotations(idx, data["annotations"])
    return idx


def _index_categories(idx: CocoIndex, cats: list[Any]) -> None:
    ids = [_need(idx.path, f"categories[{i}]", c, "id", int) for i, c in enumerate(cats)]
    if len(set(ids)) != len(ids):
        raise CocoFormatError(f"{idx.path}: categories: duplicate category id")
    idx.cat_ids = sorted(ids)


def _index_images(idx: CocoIndex, images: list[Any]) -> None:
    for i, img in enumerate(images):
        where = f"images[{i}]"
        iid = _need(idx.path, where, img, "id", int)
        _need(idx.path, where, img, "file_name", str)
        _need(idx.path, where, img, "width", int)
        _need(idx.path, where, img, "height", int)
        if iid in idx.images:
            raise CocoFormatError(f"{idx.path}: {where}: duplicate image id {iid}")
        idx.images[iid] = img
        idx.anns_by_image[iid] = []


def _index_annotations(idx: CocoIndex, anns: list[Any]) -> None:
    cats = set(idx.cat_ids)
    seen: set[int] = set()
    for i, ann in enumerate(anns):
        where = f"annotations[{i}]"
        aid = _need(idx.path, where, ann, "id", int)
        where = f"annotations[{i}] (id {aid})"
        iid = _need(idx.path, where, ann, "image_id", int)
        cid = _need(idx.path, where, ann, "category_id", int)
        bbox = _need(idx.path, where, ann, "bbox", list)
        if aid in seen:
            raise CocoFormatError(f"{idx.path}: {where}: duplicate annotation id")
        seen.add(aid)
        if iid not in idx.images:
            raise CocoFormatError(f"{idx.path}: {where}.image_id: image {iid} is not in images")
        if cid not in cats:
            raise CocoFormatError(f"{idx.path}: {where}.category_id: category {cid} is not in categories")
        if len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
            raise CocoFormatError(f"{idx.path}: {where}.bbox: expected [x, y, width, height]")
        ann.setdefault("iscrowd", 0)
        if "segmentation" not in ann:
            idx.has_segmentation = False
        if "area" not in ann:
            ann["area"] = _area(idx, ann, where)
        idx.anns_by_image[iid].append(ann)


def _area(idx: CocoIndex, ann: dict[str, Any], where: str) -> float:
    """COCO's ``area`` is the mask area; a file without it gets that (or the box area for box-only files)."""
    if "segmentation" not in ann:
        return float(ann["bbox"][2] * ann["bbox"][3])
    img = idx.images[ann["image_id"]]
    try:
        return rle_mod.area(rle_mod.from_segmentation(ann["segmentation"], img["height"], img["width"]))
    except (ValueError, TypeError) as e:
        raise CocoFormatError(f"{idx.path}: {where}.segmentation: {e}") from e
