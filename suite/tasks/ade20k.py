"""ADE20k semantic segmentation (SceneParsing / ADEChallengeData2016): mIoU and pixel accuracy over 150 classes.

CatLIP (arXiv 2404.15653v1, Table 8) reports mIoU on the ADE20k validation set (2,000 images).

Layout (``root``, default ``ade20k/ADEChallengeData2016`` under the data root):
``images/{training,validation}/*.jpg`` and ``annotations/{training,validation}/<same stem>.png``; the run's
split is ``validation`` (aliases ``val``, ``test``: the challenge's test annotations are not public) or
``training`` (alias ``train``). Annotation PNGs (grayscale or palette; the stored value is the label) hold
0..150: 0 is "other objects", which the official benchmark does not score, and ADE class c in 1..150 is
index c-1 of a model's 150 outputs. Examples are in file-name order; the id is the stem.

Request: ``ImageRequest(path, width, height, num_classes=150)`` (width/height of the annotation).
System output: ``SegmentationMap`` whose ``labels`` (H, W) hold class *indices* 0..149 at the annotation's
resolution; any other value means "no class" and is wrong on every labelled pixel.

Evidence per image: never the mask, only the confusion counts over labelled pixels, a sparse list of
``[gt, pred, count]`` in ADE ids (gt 1..150, pred 1..150 or 0 = no class). ``aggregate`` sums them and
gives (``suite.vision.metrics.segmentation_metrics``): ``mIoU``, the mean IoU over the classes whose union
is non-empty in the evaluated images; ``mIoU_all``, the devkit's mean over all 150 (a class that never
occurs counts 0), equal to ``mIoU`` on the full validation set where every class occurs; ``pixel_acc``,
correct labelled pixels / labelled pixels. A prediction on a pixel labelled 0 is ignored, as in the
devkit (``imPred .* (imLab > 0)``). Per-example ``pixel_acc_per_image`` is also scored (mean + CI). Bootstrap of the
dataset metrics: ``bootstrap_resamples`` (default 0).

``Example.data`` fields (read by the reference systems): ``path``, ``annotation_path``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from suite.data import DataMissing
from suite.interfaces import Example, ImageRequest, SegmentationMap
from suite.vision.images import image_size, load_label_map
from suite.vision.metrics import confusion_counts, confusion_matrix, segmentation_metrics
from suite.vision.paths import under_data_root

NUM_CLASSES = 150
SPLIT_ALIASES = {"val": "validation", "test": "validation", "validation": "validation", "train": "training",
                 "training": "training"}


class Ade20kTask:
    name = "ade20k"
    main_metric = "mIoU"

    def __init__(self, root: str = "ade20k/ADEChallengeData2016", bootstrap_resamples: int = 0):
        self.root = root
        self.bootstrap_resamples = int(bootstrap_resamples)
        self._memo: dict[tuple[str, int], list[list[int]]] = {}
        """Counts of the last (example id, output id): score() and evidence() see the same output in turn."""

    def _pairs(self, split: str, data_root: Path | None) -> list[tuple[Path, Path]]:
        if split not in SPLIT_ALIASES:
            raise ValueError(f"ade20k: split {split!r}: expected validation (aliases val, test) or training")
        split = SPLIT_ALIASES[split]
        root = under_data_root(data_root, self.root, "ade20k root")
        img_dir, ann_dir = root / "images" / split, root / "annotations" / split
        if not img_dir.is_dir():
            raise DataMissing(f"ade20k: {img_dir} not found (ADEChallengeData2016 from "
                              f"http://sceneparsing.csail.mit.edu; task arg root=...)")
        pairs = []
        for img in sorted(p for p in img_dir.iterdir() if p.suffix.lower() == ".jpg"):
            ann = ann_dir / f"{img.stem}.png"
            if not ann.is_file():
                raise DataMissing(f"ade20k: {img}: annotation {ann} not found")
            pairs.append((img, ann))
        return pairs

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        return [p for pair in self._pairs(split, data_root) for p in pair]

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        for img, ann in self._pairs(split, data_root):
            yield Example(id=img.stem, data={"path": str(img), "annotation_path": str(ann)})

    def request(self, example: Example) -> ImageRequest:
        w, h = image_size(Path(example.data["annotation_path"]))
        return ImageRequest(path=Path(example.data["path"]), width=w, height=h, num_classes=NUM_CLASSES)

    def evidence(self, example: Example, output: Any) -> list[list[int]]:
        key = (example.id, id(output))
        if key not in self._memo:
            self._memo = {key: self._counts(example, output)}
        return self._memo[key]

    def _counts(self, example: Example, output: Any) -> list[list[int]]:
        if not isinstance(output, SegmentationMap):
            raise TypeError(f"ade20k: {example.id}: expected SegmentationMap, got {type(output).__name__}")
        gt = load_label_map(Path(example.data["annotation_path"]))
        pred = np.asarray(output.labels)
        if pred.shape != gt.shape:
            raise ValueError(f"ade20k: {example.id}: prediction shape {pred.shape} != annotation shape {gt.shape} "
                             f"({example.data['annotation_path']})")
        try:
            return confusion_counts(gt, pred.astype(np.int64) + 1, NUM_CLASSES)
        except ValueError as e:
            raise ValueError(f"{example.data['annotation_path']}: {e}") from e

    def score(self, example: Example, output: Any) -> dict[str, float]:
        conf = confusion_matrix(self.evidence(example, output), NUM_CLASSES)
        labelled = conf[1:, :].sum()
        return {"pixel_acc_per_image": float(np.trace(conf[1:, 1:]) / labelled)} if labelled else {}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        triples = [t for r in records for t in r["outputs"][0]]
        return segmentation_metrics(confusion_matrix(triples, NUM_CLASSES))
