"""Training data for the dense transfer tasks: COCO instances (multi-label targets, boxes, masks) and ADE20k pairs.

Why our own readers instead of the suite's task adapters: the adapters own *evaluation*
(official splits, scoring); fine-tuning needs the *training* annotations in model-ready form
(multi-hot vectors, xyxy boxes, binary masks at the training scale). Images are decoded once,
shrunk to the training scale and kept in memory as uint8: the mini data sets are a few hundred
images, and CPU time goes to the model, not to JPEG decoding.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image


class DenseDataError(ValueError):
    """Bad or missing training data; the message names the file."""


@dataclass(frozen=True)
class CocoImage:
    id: int
    path: Path
    width: int
    height: int
    anns: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class CocoSet:
    """One COCO split: images in id order and the category ids in sorted order (the label space)."""

    images: tuple[CocoImage, ...]
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    ann_file: Path


def read_coco(ann_file: Path, image_dir: Path) -> CocoSet:
    """An official ``instances_*.json`` + its image folder, checked by the suite's COCO loader."""
    from suite.vision.coco import load_instances

    index = load_instances(Path(ann_file))
    names = {c["id"]: c.get("name", str(c["id"])) for c in index.dataset["categories"]}
    images = []
    for iid in sorted(index.images):
        im = index.images[iid]
        path = Path(image_dir) / im["file_name"]
        if not path.is_file():
            raise DenseDataError(f"{ann_file}: image {iid} refers to {path}, which does not exist")
        images.append(CocoImage(iid, path, int(im["width"]), int(im["height"]), tuple(index.anns_by_image[iid])))
    return CocoSet(tuple(images), tuple(index.cat_ids), tuple(names[c] for c in index.cat_ids), Path(ann_file))


def coco_split(data_root: Path, subset: str, split: str) -> CocoSet:
    """``<data_root>/coco/<subset>/annotations/instances_<split>.json`` with images in ``<subset>/<split>/``."""
    base = Path(data_root) / "coco" / subset
    return read_coco(base / "annotations" / f"instances_{split}.json", base / split)


def multi_hot(img: CocoImage, category_ids: Sequence[int]) -> torch.Tensor:
    """80-dim target in sorted category-id order: 1 where any instance (crowd included) of the class is present."""
    index = {c: i for i, c in enumerate(category_ids)}
    t = torch.zeros(len(category_ids))
    for a in img.anns:
        t[index[a["category_id"]]] = 1.0
    return t


def ann_mask(ann: dict[str, Any], height: int, width: int) -> np.ndarray:
    """Binary (H, W) uint8 mask of one annotation (polygons or RLE, compressed or not)."""
    from suite.vision import rle

    return rle.decode(rle.from_segmentation(ann["segmentation"], height, width))


def scale_for(height: int, width: int, min_size: int, max_size: int) -> float:
    """torchvision's GeneralizedRCNNTransform rule: shorter side to min_size unless the longer exceeds max_size."""
    return min(min_size / min(height, width), max_size / max(height, width))


def load_rgb(path: Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """uint8 (3, H, W); ``size`` = (width, height) to resize to (bilinear)."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != size:
            im = im.resize(size, Image.BILINEAR)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1).contiguous()


def resize_nearest(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if (mask.shape[1], mask.shape[0]) == size:
        return mask
    return np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))


@dataclass
class DetectionItem:
    """One training image at the training scale: uint8 image, xyxy boxes, contiguous labels (1..K), masks."""

    image: torch.Tensor
    boxes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor


def detection_item(img: CocoImage, category_ids: Sequence[int], min_size: int, max_size: int) -> DetectionItem:
    """Crowd regions and degenerate boxes are left out of training targets (as torchvision's references do)."""
    s = scale_for(img.height, img.width, min_size, max_size)
    size = (max(1, round(img.width * s)), max(1, round(img.height * s)))
    index = {c: i + 1 for i, c in enumerate(category_ids)}
    boxes, labels, masks = [], [], []
    for a in img.anns:
        x, y, w, h = a["bbox"]
        if a.get("iscrowd", 0) or w < 1 or h < 1:
            continue
        boxes.append([x * s, y * s, (x + w) * s, (y + h) * s])
        labels.append(index[a["category_id"]])
        masks.append(resize_nearest(ann_mask(a, img.height, img.width), size))
    m = torch.from_numpy(np.stack(masks)) if masks else torch.zeros(0, size[1], size[0], dtype=torch.uint8)
    return DetectionItem(load_rgb(img.path, size), torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                         torch.tensor(labels, dtype=torch.int64), m)


def hflip_detection(item: DetectionItem) -> DetectionItem:
    w = item.image.shape[-1]
    boxes = item.boxes.clone()
    boxes[:, [0, 2]] = w - item.boxes[:, [2, 0]]
    return DetectionItem(item.image.flip(-1), boxes, item.labels, item.masks.flip(-1))


def shorter_side_image(path: Path, side: int) -> torch.Tensor:
    """uint8 image with its shorter side resized to ``side`` (the classification/multi-label protocol)."""
    with Image.open(path) as im:
        w, h = im.size
    s = side / min(w, h)
    return load_rgb(path, (max(side, round(w * s)), max(side, round(h * s))))


def crop(image: torch.Tensor, size: int, top: int, left: int) -> torch.Tensor:
    return image[..., top:top + size, left:left + size]


def center_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    h, w = image.shape[-2:]
    return crop(image, size, (h - size) // 2, (w - size) // 2)


# ----------------------------------------------------------------------------- ADE20k


@dataclass(frozen=True)
class SegPair:
    image: Path
    annotation: Path


def ade20k_pairs(data_root: Path, split: str) -> list[SegPair]:
    """ADEChallengeData2016 layout: ``images/<split>/*.jpg`` + ``annotations/<split>/*.png`` (0 = unlabelled)."""
    base = Path(data_root) / "ade20k" / "ADEChallengeData2016"
    img_dir, ann_dir = base / "images" / split, base / "annotations" / split
    if not img_dir.is_dir():
        raise DenseDataError(f"{img_dir}: ADE20k images not found (expected ADEChallengeData2016/images/{split})")
    pairs = []
    for p in sorted(img_dir.glob("*.jpg")):
        a = ann_dir / f"{p.stem}.png"
        if not a.is_file():
            raise DenseDataError(f"{p}: no annotation {a}")
        pairs.append(SegPair(p, a))
    return pairs


def load_seg_pair(pair: SegPair, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (uint8) and label map (int64, ADE ids 1..150 -> 0..149, unlabelled -> -1), shorter side = ``side``."""
    image = shorter_side_image(pair.image, side)
    with Image.open(pair.annotation) as a:
        ann = np.asarray(a.resize((image.shape[-1], image.shape[-2]), Image.NEAREST)).astype(np.int64)
    return image, torch.from_numpy(ann - 1)
