"""Training sets for classification transfer: ImageNet-style ImageFolder and the official Places365 lists.

Why a loader of our own next to the suite's ``imagenet`` task: the task adapter reads *evaluation* splits
and scores outputs; training needs the train split, a class-balanced fraction of it (Figure 5 trains on
1-100% of the data) and each class's name for Transfer Init (a WordNet id for ImageNet, a scene path such
as ``/r/restaurant_kitchen`` for Places365). Outputs are tied to the task's label space through
``task_index`` (output j is the task's class ``task_index[j]``), so a 10-class Imagenette head still
answers over the 1,000-class ImageNet index the ``imagenet`` task scores.

Layouts:

* ``imagefolder``: ``root/<split>/<wnid>/*.JPEG``; ``task_index`` from ``imagenet_class_index.json``
  (ImageNet-1k index of each wnid) when given, else the folder's position;
* ``places365``: ``categories_places365.txt`` (``/a/airfield 0``), ``places365_train_standard.txt``
  (``/a/airfield/00000001.jpg 0``, images under ``data_256/`` or ``train_256/``) and
  ``places365_val.txt`` (``Places365_val_00000001.jpg 165``, images under ``val_256/``): the official
  release's file names.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_WNID = re.compile(r"^n\d{8}$")
PLACES_CATEGORIES = "categories_places365.txt"
PLACES_LISTS = {"train": "places365_train_standard.txt", "val": "places365_val.txt"}
PLACES_IMAGE_DIRS = {"train": ("data_256", "train_256", "data_large"), "val": ("val_256", "val_large")}


class TransferDataError(ValueError):
    pass


@dataclass(frozen=True)
class ClassificationData:
    items: tuple[tuple[Path, int], ...]
    """(image file, output index 0..K-1)."""
    label_names: tuple[str, ...]
    """Per output: the name Transfer Init parses (a wnid, or a Places365 category path)."""
    task_index: tuple[int, ...]
    """Per output: the class index in the evaluation task's label space."""
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def files(self) -> list[Path]:
        return [p for p, _ in self.items]


def imagefolder(root: Path, split: str = "train", class_index: Path | None = None) -> ClassificationData:
    folder = root / split if (root / split).is_dir() else root
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not classes:
        raise TransferDataError(f"{folder}: no class folders (expected <root>/{split}/<class>/<image>)")
    index = None
    if class_index is not None:
        raw = json.loads(Path(class_index).read_text())
        index = {v[0]: int(k) for k, v in raw.items()}
        unknown = [c for c in classes if c not in index]
        if unknown:
            raise TransferDataError(f"{folder / unknown[0]}: folder name is not an ImageNet-1k wnid in {class_index}")
    items = []
    for j, c in enumerate(classes):
        for img in sorted((folder / c).iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES:
                items.append((img, j))
    task_index = tuple(index[c] for c in classes) if index else tuple(range(len(classes)))
    return ClassificationData(tuple(items), tuple(classes), task_index, str(folder))


def places365_categories(root: Path) -> list[str]:
    path = root / PLACES_CATEGORIES
    if not path.is_file():
        raise TransferDataError(f"{path}: not found (the Places365 release's category list)")
    names: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit():
            raise TransferDataError(f"{path}:{lineno}: expected '<category> <index>', got {line.strip()[:60]!r}")
        names[int(parts[1])] = parts[0]
    if sorted(names) != list(range(len(names))):
        raise TransferDataError(f"{path}: category indices are not 0..{len(names) - 1}")
    return [names[i] for i in range(len(names))]


def places365(root: Path, split: str = "train") -> ClassificationData:
    if split not in PLACES_LISTS:
        raise TransferDataError(f"places365: split {split!r}: expected train or val")
    cats = places365_categories(root)
    lst = root / PLACES_LISTS[split]
    if not lst.is_file():
        raise TransferDataError(f"{lst}: not found (official Places365 list for split {split})")
    img_dir = next((root / d for d in PLACES_IMAGE_DIRS[split] if (root / d).is_dir()), None)
    if img_dir is None:
        raise TransferDataError(f"{root}: no image folder for {split} (looked for {', '.join(PLACES_IMAGE_DIRS[split])})")
    items = []
    for lineno, line in enumerate(lst.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or int(parts[1]) >= len(cats):
            raise TransferDataError(f"{lst}:{lineno}: expected '<image> <label 0-{len(cats) - 1}>', "
                                    f"got {line.strip()[:60]!r}")
        items.append((img_dir / parts[0].lstrip("/"), int(parts[1])))
    return ClassificationData(tuple(items), tuple(cats), tuple(range(len(cats))), str(lst))


def load(layout: str, root: Path, split: str = "train", class_index: Path | None = None) -> ClassificationData:
    if layout == "imagefolder":
        return imagefolder(root, split, class_index)
    if layout == "places365":
        return places365(root, split)
    raise TransferDataError(f"unknown transfer data layout {layout!r} (imagefolder or places365)")


def fraction(data: ClassificationData, percent: float, seed: int = 0) -> ClassificationData:
    """A class-balanced subset: ceil(percent% of each class), at least one image per class, chosen by a seeded
    shuffle so a 5% subset contains the 1% one (the curve of Figure 5 then varies only the amount of data)."""
    if not 0 < percent <= 100:
        raise TransferDataError(f"data fraction must be in (0, 100] percent, got {percent}")
    by_class: dict[int, list[tuple[Path, int]]] = {}
    for it in data.items:
        by_class.setdefault(it[1], []).append(it)
    keep = []
    for c in sorted(by_class):
        group = list(by_class[c])
        random.Random(seed * 1009 + c).shuffle(group)
        keep.extend(group[:max(1, math.ceil(len(group) * percent / 100))])
    keep.sort(key=lambda it: (it[1], str(it[0])))
    return ClassificationData(tuple(keep), data.label_names, data.task_index, f"{data.source} ({percent:g}%)")
