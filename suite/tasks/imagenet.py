"""ImageNet-1k classification (ILSVRC2012 validation): top-1 / top-5 accuracy over the 1,000-class index.

CatLIP (arXiv 2404.15653v1, Section 4 and Table 5) reports ImageNet-1k top-1 on the validation set, whose
labels are public (those of the test set are not), so ``test`` is an alias of ``val`` here.

Layouts (task arg ``layout``; ``auto`` decides from the folder):

* ``val``: the official flat folder of ``ILSVRC2012_val_XXXXXXXX.JPEG`` files (``root``, or ``root/images``,
  or ``images=``) with a label file (``labels=``; default: the first of ``val.txt``, ``dataset.txt``,
  ``labels.tsv``, ``ILSVRC2012_validation_ground_truth.txt`` in ``root``). Caffe-style ``<file> <label>``
  labels are already 0..999; the devkit's ground truth holds 1-based ILSVRC2012_IDs in the devkit's
  synset order and is mapped through the devkit ``meta.mat`` (``meta=``, default next to the ground truth)
  to wnids and then to 0..999 (see ``suite.vision.imagenet_labels``). Every labelled file must exist
  unless ``subset=true`` (then the files present are evaluated, e.g. a sample with the full label file).
* ``imagefolder``: ``root/<split>/<wnid>/*.JPEG`` (or ``root/<wnid>/...``) holding any subset of the 1,000
  classes; each wnid folder maps to its ImageNet-1k index through ``imagenet_class_index.json``
  (``class_index=``, default ``imagenet/meta/imagenet_class_index.json`` under the data root), never to
  the folder's position, so scores stay over the 1,000-class index.

The ``val`` layout with a caffe-style label file also serves other single-label sets in the same flat form,
e.g. Places365 (``images=val_256 labels=places365_val.txt num_classes=365``, CatLIP Table 2).

Examples are in file-name order (``ILSVRC2012_val_`` numbers, then wnid/file for ImageFolder); ids are
the file stem (``ILSVRC2012_val_00000001``) or ``<wnid>/<stem>``.

Request: ``ImageRequest(path, resize=256, crop=224, num_classes=1000)``; the stated evaluation transform
(shorter side 256, center crop 224) is ``suite.vision.images.load_for_classification``.
System output: ``ClassScores`` with ``topk`` = class indices 0..999 (0..num_classes-1), best first (5 or more
for top-5; ``scores`` aligned with ``topk``).
``Example.data`` fields (read by the reference systems): ``label`` (int, 0..999), ``path`` (str), ``file``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from suite.data import DataMissing
from suite.interfaces import ClassScores, Example, ImageRequest
from suite.vision.imagenet_labels import (
    DEVKIT_GT_NAME,
    NUM_CLASSES,
    WNID,
    ValLabels,
    detect_style,
    load_class_index,
    read_caffe,
    read_devkit,
    read_tsv,
)
from suite.vision.images import is_image
from suite.vision.paths import first_existing, relative_to_either, under_data_root

LABEL_FILE_NAMES = ("val.txt", "dataset.txt", "labels.tsv", DEVKIT_GT_NAME)
DEFAULT_CLASS_INDEX = "imagenet/meta/imagenet_class_index.json"
SPLIT_ALIASES = {"test": "val", "validation": "val", "val": "val", "train": "train"}


class ImageNetTask:
    name = "imagenet"
    main_metric = "top1"

    def __init__(self, layout: str = "auto", root: str = "imagenet/val", labels: str | None = None,
                 images: str | None = None, class_index: str | None = None, meta: str | None = None,
                 subset: bool = False, resize: int | None = 256, crop: int | None = 224,
                 num_classes: int = NUM_CLASSES):
        if layout not in ("auto", "val", "imagefolder"):
            raise ValueError(f"imagenet: layout={layout!r}: expected auto, val or imagefolder")
        self.layout = layout
        self.root = root
        self.labels = labels
        self.images = images
        self.class_index = class_index
        self.meta = meta
        self.subset = bool(subset)
        self.resize = resize
        self.crop = crop
        self.num_classes = int(num_classes)

    # ------------------------------------------------------------------ locating the data

    def _split(self, split: str) -> str:
        if split not in SPLIT_ALIASES:
            raise ValueError(f"imagenet: split {split!r}: expected val (alias test) or train")
        return SPLIT_ALIASES[split]

    def _root(self, data_root: Path | None) -> Path:
        root = under_data_root(data_root, self.root, "imagenet root")
        if not root.is_dir():
            raise DataMissing(f"imagenet: root {root} is not a directory (task arg root=...; the ILSVRC2012 "
                              f"validation images come from https://image-net.org, terms of access apply)")
        return root

    def _class_index_path(self, data_root: Path | None, root: Path) -> Path:
        if self.class_index:
            return relative_to_either(self.class_index, root, data_root)
        if data_root is not None:
            return Path(data_root) / DEFAULT_CLASS_INDEX
        raise DataMissing(f"imagenet: no class index: pass class_index=PATH to imagenet_class_index.json or "
                          f"set REPRO_DATA_DIR (default {DEFAULT_CLASS_INDEX})")

    def _folder_for(self, split: str, root: Path) -> Path | None:
        """The ImageFolder directory for ``split``, if ``root`` is (or holds) one."""
        for cand in (root / split, root):
            if cand.is_dir() and any(p.is_dir() and WNID.match(p.name) for p in cand.iterdir()):
                return cand
        return None

    def _resolved_layout(self, split: str, root: Path) -> str:
        if self.layout != "auto":
            return self.layout
        if self.labels is None and self._folder_for(split, root) is not None:
            return "imagefolder"
        return "val"

    # ------------------------------------------------------------------ the two layouts

    def _val_labels(self, root: Path, data_root: Path | None) -> tuple[ValLabels, list[Path]]:
        if self.labels:
            path = relative_to_either(self.labels, root, data_root)
        else:
            path = first_existing([root / n for n in LABEL_FILE_NAMES])
            if path is None:
                raise DataMissing(f"imagenet: no label file in {root} (looked for {', '.join(LABEL_FILE_NAMES)}; "
                                  f"pass labels=PATH)")
        style = detect_style(path)
        if style == "caffe":
            return read_caffe(path, self.num_classes), [path]
        if self.num_classes != NUM_CLASSES:
            raise ValueError(f"imagenet: num_classes={self.num_classes} needs a caffe-style label file "
                             f"(<file> <label>), not {path.name}")
        index_path = self._class_index_path(data_root, root)
        if style == "tsv":
            wnids = load_class_index(index_path) if index_path.is_file() else None
            return read_tsv(path, wnids, self.num_classes), [path] + ([index_path] if wnids else [])
        meta = relative_to_either(self.meta, root, data_root) if self.meta else path.parent / "meta.mat"
        return read_devkit(path, meta, load_class_index(index_path)), [path, meta, index_path]

    def _val_items(self, root: Path, data_root: Path | None) -> tuple[list[tuple[str, Path, int]], list[Path]]:
        labels, label_files = self._val_labels(root, data_root)
        img_dir = (relative_to_either(self.images, root, data_root) if self.images
                   else root / "images" if (root / "images").is_dir() else root)
        present = {p.name: p for p in img_dir.iterdir() if p.is_file() and is_image(p)} if img_dir.is_dir() else {}
        items = []
        for name, path in sorted(present.items()):
            if name not in labels.labels:
                raise ValueError(f"{labels.path}: no label for image {name} (in {img_dir})")
            items.append((Path(name).stem, path, labels.labels[name]))
        if not self.subset:
            missing = [n for n in labels.labels if n not in present]
            if missing:
                raise DataMissing(f"{labels.path}:{labels.lines[missing[0]]}: image {missing[0]} not found in "
                                  f"{img_dir} ({len(missing)} of {len(labels.labels)} labelled images missing; "
                                  f"pass subset=true to evaluate only the images present)")
        return items, label_files

    def _folder_items(self, split: str, root: Path, data_root: Path | None
                      ) -> tuple[list[tuple[str, Path, int]], list[Path]]:
        folder = self._folder_for(split, root)
        if folder is None:
            raise DataMissing(f"imagenet: {root} holds no ImageFolder of wnid directories (for split {split}: "
                              f"{root / split}/<wnid>/ or {root}/<wnid>/)")
        if self.num_classes != NUM_CLASSES:
            raise ValueError(f"imagenet: the ImageFolder layout maps wnids to ImageNet-1k; num_classes="
                             f"{self.num_classes} needs layout=val with a caffe-style label file")
        index_path = self._class_index_path(data_root, root)
        index = {w: i for i, w in enumerate(load_class_index(index_path))}
        items = []
        for cls_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
            if cls_dir.name not in index:
                raise ValueError(f"{cls_dir}: folder name {cls_dir.name!r} is not an ImageNet-1k wnid "
                                 f"(not in {index_path})")
            for img in sorted(p for p in cls_dir.iterdir() if p.is_file() and is_image(p)):
                items.append((f"{cls_dir.name}/{img.stem}", img, index[cls_dir.name]))
        return items, [index_path]

    def _items(self, split: str, data_root: Path | None) -> tuple[list[tuple[str, Path, int]], list[Path]]:
        split = self._split(split)
        root = self._root(data_root)
        if self._resolved_layout(split, root) == "imagefolder":
            return self._folder_items(split, root, data_root)
        if split != "val":
            raise ValueError(f"imagenet: layout val holds the validation set only, not split {split!r}")
        return self._val_items(root, data_root)

    # ------------------------------------------------------------------ the Task contract

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        items, label_files = self._items(split, data_root)
        return label_files + [p for _, p, _ in items]

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        items, _ = self._items(split, data_root)
        for ex_id, path, label in items:
            yield Example(id=ex_id, data={"path": str(path), "file": path.name, "label": label})

    def request(self, example: Example) -> ImageRequest:
        return ImageRequest(path=Path(example.data["path"]), resize=self.resize, crop=self.crop,
                            num_classes=self.num_classes)

    def score(self, example: Example, output: Any) -> dict[str, float]:
        if not isinstance(output, ClassScores):
            raise TypeError(f"imagenet: example {example.id}: expected ClassScores, got {type(output).__name__}")
        topk = [int(c) for c in output.topk]
        label = example.data["label"]
        return {"top1": float(bool(topk) and topk[0] == label), "top5": float(label in topk[:5])}
