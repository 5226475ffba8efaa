"""COCO 2017 instances: detection + instance segmentation (box/mask AP) and 80-class multi-label classification.

Data: an official instances JSON and its image folder: ``root`` (default ``coco`` under the data root),
the run's split (``val2017``; ``val``/``test`` are aliases, since test-dev has no public annotations and
CatLIP, arXiv 2404.15653v1 Tables 6-7, reports val2017), ``annotations`` (default
``<root>/annotations/instances_<split>.json``) and ``images`` (default ``<root>/<split>`` or
``<root>/images/<split>``). Examples are the JSON's images in file order, including images without
annotations; the id is the COCO image id as a string. A missing image file, an annotation whose image is
not listed, an unknown category or malformed JSON stops the run with one line naming the file and field.

**Detection** (``coco_detection``). Request: ``ImageRequest(path, width, height, num_classes=80)``.
System output: ``Detections`` in original pixels, ``labels`` = COCO category ids, ``masks`` compressed RLEs
(``suite.vision.rle``) or None for a box-only system. Evidence per image: COCO results rows
``{image_id, category_id, bbox [x, y, w, h], score, segmentation}``, so concatenating the records gives a
results file. ``aggregate`` runs pycocotools' COCOeval for bbox (and segm when masks are given) over the
recorded images: ``bbox_AP, bbox_AP50, bbox_AP75, bbox_APs, bbox_APm, bbox_APl`` and the ``segm_*`` twins.

Where the ground truth for AP comes from: the annotation JSON itself, loaded by its path, the same file
that is checksummed into the run's provenance, and no other file. COCOeval needs the full official ground
truth of every evaluated image (crowd regions that make detections ignorable, areas that define the size
ranges, images without objects that only produce false positives); copying it into each run's records
would duplicate the dataset per run and could drift from the file the provenance names. Records
therefore hold only what the system produced. A bootstrap resample (``bootstrap_resamples``, default 0:
one COCOeval per resample is seconds at val2017 scale, so it is off unless asked for) renames each copy of
a drawn image to a new image id with its ground truth, so duplicates count twice as the bootstrap needs.

**Multi-label** (``coco_multilabel``). Targets: a class is present in an image if any annotation of it
exists there, crowd annotations included (a crowd region is still the class present; corenet's COCO
classification dataset, which CatLIP's COCO numbers come from, makes the same choice). Class order: the
80 category ids sorted. Request: ``ImageRequest(path, width, height, resize, crop, num_classes=80)``
(``resize``/``crop`` task args, default None = the system's own; corenet's CatLIP recipe evaluates at 512).
System output: ``MultiLabelScores`` with 80 scores (logits or probabilities: AP only uses their order).
Evidence: the 80 scores plus the indices of the present classes (80 bits of ground truth, stored so the
mAP is recomputable from records alone). ``aggregate``: ``mAP`` = mean over classes with at least one
positive image of the class's non-interpolated AP over the images (the definition of sklearn's
``average_precision_score``, which corenet uses; with every class present, as on val2017, this equals
corenet's "macro" mAP, while on a small subset sklearn's macro would count absent classes as 0),
``mAP_micro``, ``n_classes_with_positives``.

``Example.data`` fields (read by the reference systems): ``path``, ``image_id``, ``width``, ``height``;
detection adds ``coco_anns`` (the image's annotation dicts as in the JSON) and ``category_ids`` (all
category ids, sorted); multi-label adds ``targets``
(80 ints 0/1) and ``positives`` (indices of the present classes).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np

from suite.data import DataMissing
from suite.interfaces import Detections, Example, ImageRequest, MultiLabelScores
from suite.vision import cocoeval
from suite.vision import rle as rle_mod
from suite.vision.coco import CocoIndex, load_instances
from suite.vision.metrics import multilabel_map
from suite.vision.paths import first_existing, relative_to_either, under_data_root

SPLIT_ALIASES = {"val": "val2017", "test": "val2017", "validation": "val2017", "train": "train2017"}
NUM_CLASSES = 80


class _CocoData:
    """Finding and loading the instances JSON and the images (shared by both COCO tasks)."""

    def __init__(self, root: str = "coco", annotations: str | None = None, images: str | None = None,
                 bootstrap_resamples: int = 0):
        self.root = root
        self.annotations = annotations
        self.images = images
        self.bootstrap_resamples = int(bootstrap_resamples)
        self._index: CocoIndex | None = None
        self._image_dir: Path | None = None

    def _locate(self, split: str, data_root: Path | None) -> tuple[Path, Path]:
        split = SPLIT_ALIASES.get(split, split)
        root = under_data_root(data_root, self.root, "coco root")
        ann = (relative_to_either(self.annotations, root, data_root) if self.annotations
               else root / "annotations" / f"instances_{split}.json")
        if not ann.is_file():
            raise DataMissing(f"{self.name}: annotation file {ann} not found (split {split}; task arg "
                              f"annotations=PATH; COCO 2017 annotations: https://cocodataset.org)")
        if self.images:
            img_dir = relative_to_either(self.images, root, data_root)
        else:
            img_dir = first_existing([root / split, root / "images" / split]) or root / split
        if not img_dir.is_dir():
            raise DataMissing(f"{self.name}: image folder {img_dir} not found (task arg images=PATH)")
        return ann, img_dir

    def _load(self, split: str, data_root: Path | None) -> CocoIndex:
        ann, img_dir = self._locate(split, data_root)
        if self._index is None or self._index.path != ann or self._image_dir != img_dir:
            index = load_instances(ann)
            for i, img in enumerate(index.dataset["images"]):
                if not (img_dir / img["file_name"]).is_file():
                    raise DataMissing(f"{ann}: images[{i}] (id {img['id']}).file_name: {img['file_name']} "
                                      f"not found in {img_dir}")
            self._index, self._image_dir = index, img_dir
        return self._index

    def _gt(self) -> CocoIndex:
        if self._index is None:
            raise RuntimeError(f"{self.name}: aggregate() needs the annotation file; examples() loads it first")
        return self._index

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        index = self._load(split, data_root)
        assert self._image_dir is not None
        return [index.path] + [self._image_dir / img["file_name"] for img in index.dataset["images"]]

    def _base(self, index: CocoIndex, img: Mapping[str, Any]) -> dict[str, Any]:
        assert self._image_dir is not None
        return {"path": str(self._image_dir / img["file_name"]), "image_id": img["id"], "width": img["width"],
                "height": img["height"]}

    def request(self, example: Example) -> ImageRequest:
        d = example.data
        return ImageRequest(path=Path(d["path"]), width=d["width"], height=d["height"],
                            resize=getattr(self, "resize", None), crop=getattr(self, "crop", None),
                            num_classes=NUM_CLASSES)


def _image_ids(records: Sequence[Mapping[str, Any]]) -> tuple[list[int], list[int]]:
    """Base COCO ids of the records and the ids to evaluate them under (fresh ids when one repeats)."""
    base = [int(str(r["id"]).split("#", 1)[0]) for r in records]
    if len(set(base)) == len(base):
        return base, base
    return base, list(range(1, len(base) + 1))


class CocoDetectionTask(_CocoData):
    name = "coco_detection"
    main_metric = "bbox_AP"

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        index = self._load(split, data_root)
        for img in index.dataset["images"]:
            data = {**self._base(index, img), "coco_anns": index.anns_by_image[img["id"]],
                    "category_ids": index.cat_ids}
            yield Example(id=str(img["id"]), data=data)

    def score(self, example: Example, output: Any) -> dict[str, float]:
        return {}  # AP is a dataset-level metric: see aggregate

    def evidence(self, example: Example, output: Any) -> list[dict[str, Any]]:
        if not isinstance(output, Detections):
            raise TypeError(f"coco_detection: image {example.id}: expected Detections, got {type(output).__name__}")
        n = len(output.boxes)
        if len(output.scores) != n or len(output.labels) != n or (output.masks is not None and len(output.masks) != n):
            raise ValueError(f"coco_detection: image {example.id}: boxes, scores, labels and masks differ in length")
        known = set(self._gt().cat_ids)
        rows = []
        for k in range(n):
            cat = int(output.labels[k])
            if cat not in known:
                raise ValueError(f"coco_detection: image {example.id}: detection {k} has category id {cat}, "
                                 f"which the annotation file does not define (labels are COCO category ids)")
            row = {"image_id": int(example.data["image_id"]), "category_id": cat,
                   "bbox": [round(float(v), 2) for v in output.boxes[k]], "score": round(float(output.scores[k]), 6)}
            if output.masks is not None:
                row["segmentation"] = rle_mod.to_json(output.masks[k])
            rows.append(row)
        return rows

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        index = self._gt()
        base, ids = _image_ids(records)
        gt = cocoeval.build_gt(index, base, ids)
        rows = [{**row, "image_id": new} for r, new in zip(records, ids) for row in r["outputs"][0]]
        out = {f"bbox_{k}": v for k, v in cocoeval.evaluate(gt, rows, "bbox").items()}
        with_masks = sum("segmentation" in row for row in rows)
        if with_masks and with_masks != len(rows):
            raise ValueError("coco_detection: some detections carry masks and others do not; mask AP needs all")
        if index.has_segmentation and with_masks == len(rows):
            out.update({f"segm_{k}": v for k, v in cocoeval.evaluate(gt, rows, "segm").items()})
        return out


class CocoMultiLabelTask(_CocoData):
    name = "coco_multilabel"
    main_metric = "mAP"

    def __init__(self, root: str = "coco", annotations: str | None = None, images: str | None = None,
                 bootstrap_resamples: int = 0, resize: int | None = None, crop: int | None = None):
        super().__init__(root, annotations, images, bootstrap_resamples)
        self.resize = resize
        self.crop = crop

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        index = self._load(split, data_root)
        position = {c: i for i, c in enumerate(index.cat_ids)}
        if len(position) != NUM_CLASSES:
            raise ValueError(f"{index.path}: categories: expected the {NUM_CLASSES} COCO classes, got {len(position)}")
        for img in index.dataset["images"]:
            positives = sorted({position[a["category_id"]] for a in index.anns_by_image[img["id"]]})
            targets = [0] * NUM_CLASSES
            for c in positives:
                targets[c] = 1
            yield Example(id=str(img["id"]), data={**self._base(index, img), "targets": targets,
                                                   "positives": positives})

    def score(self, example: Example, output: Any) -> dict[str, float]:
        return {}  # mAP ranks images against each other: see aggregate

    def evidence(self, example: Example, output: Any) -> dict[str, Any]:
        if not isinstance(output, MultiLabelScores):
            raise TypeError(f"coco_multilabel: image {example.id}: expected MultiLabelScores, "
                            f"got {type(output).__name__}")
        if len(output.scores) != NUM_CLASSES:
            raise ValueError(f"coco_multilabel: image {example.id}: expected {NUM_CLASSES} scores (sorted COCO "
                             f"category ids), got {len(output.scores)}")
        return {**output.to_record(), "positives": list(example.data["positives"])}

    def aggregate(self, records: list[dict[str, Any]]) -> dict[str, float]:
        scores = np.array([r["outputs"][0]["scores"] for r in records], dtype=np.float64)
        targets = np.zeros_like(scores, dtype=np.int64)
        for i, r in enumerate(records):
            targets[i, r["outputs"][0]["positives"]] = 1
        return multilabel_map(targets, scores)
