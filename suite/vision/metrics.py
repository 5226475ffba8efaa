"""Dataset-level vision metrics computed from stored evidence: multi-label mAP, confusion counts, mIoU.

Each function takes plain arrays or JSON lists (what run records hold), so a task's ``aggregate`` is a
thin loop over records and the bootstrap can call it on any resample.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

# ----------------------------------------------------------------------------- multi-label


def average_precision(target: np.ndarray, score: np.ndarray) -> float:
    """Non-interpolated AP of one class: sum over distinct score thresholds of (R_n - R_{n-1}) * P_n.

    This is the definition of sklearn's ``average_precision_score``, which corenet uses for CatLIP's COCO
    multi-label mAP; tied scores form one threshold. Written with numpy because the bootstrap calls it
    80 classes x hundreds of resamples, where sklearn's input checks dominate.
    """
    y = np.asarray(target, dtype=np.int64)
    order = np.argsort(-np.asarray(score, dtype=np.float64), kind="mergesort")
    s, y = np.asarray(score, dtype=np.float64)[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # last index of each group of tied scores
    tp = np.cumsum(y)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision_per_class(targets: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``average_precision`` of each class (column); NaN for a class without a positive image (sklearn
    would score it 0; the caller decides)."""
    targets = np.asarray(targets)
    scores = np.asarray(scores, dtype=np.float64)
    out = np.full(targets.shape[1], np.nan)
    for c in range(targets.shape[1]):
        if targets[:, c].any():
            out[c] = average_precision(targets[:, c], scores[:, c])
    return out


def multilabel_map(targets: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """``mAP``: mean AP over classes with at least one positive image (corenet's sklearn macro average
    equals it whenever every class has a positive, as on COCO val2017); ``mAP_micro``: all (image, class)
    pairs ranked together (corenet's "micro")."""
    ap = average_precision_per_class(targets, scores)
    out: dict[str, float] = {}
    if np.isfinite(ap).any():
        out["mAP"] = float(np.nanmean(ap))
        out["mAP_micro"] = average_precision(np.asarray(targets).ravel(), np.asarray(scores).ravel())
    out["n_classes_with_positives"] = float(np.isfinite(ap).sum())
    return out


# ----------------------------------------------------------------------------- semantic segmentation


def confusion_counts(gt: np.ndarray, pred: np.ndarray, num_classes: int) -> list[list[int]]:
    """Sparse ``[gt, pred, count]`` triples over labelled pixels.

    ``gt`` holds dataset label ids 0..num_classes with 0 = unlabelled (skipped); ``pred`` holds the same
    ids, any value outside 1..num_classes being stored as 0 ("no class": wrong on every labelled pixel).
    """
    gt = np.asarray(gt).astype(np.int64, copy=False)
    pred = np.asarray(pred).astype(np.int64, copy=False)
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} != annotation shape {gt.shape}")
    if gt.size and (gt.min() < 0 or gt.max() > num_classes):
        raise ValueError(f"annotation values must lie in 0..{num_classes}, got {gt.min()}..{gt.max()}")
    keep = gt > 0
    g = gt[keep]
    p = pred[keep]
    p = np.where((p >= 1) & (p <= num_classes), p, 0)
    n = num_classes + 1
    counts = np.bincount(g * n + p, minlength=n * n)
    nz = np.flatnonzero(counts)
    return [[int(i // n), int(i % n), int(counts[i])] for i in nz]


def confusion_matrix(triples: Iterable[Sequence[int]], num_classes: int) -> np.ndarray:
    """Dense (num_classes+1)^2 matrix (rows gt, columns pred; index 0 = unlabelled / no class)."""
    m = np.zeros((num_classes + 1, num_classes + 1), dtype=np.int64)
    arr = np.asarray(list(triples), dtype=np.int64).reshape(-1, 3)
    np.add.at(m, (arr[:, 0], arr[:, 1]), arr[:, 2])
    return m


def segmentation_metrics(conf: np.ndarray) -> dict[str, float]:
    """mIoU, the devkit's 150-class mean, and pixel accuracy from a confusion matrix over labelled pixels.

    IoU_c = |gt=c and pred=c| / |gt=c or pred=c| counted over labelled pixels only (a prediction on an
    unlabelled pixel is ignored, as in the ADE20k devkit). ``mIoU`` averages over classes whose union is
    non-empty; ``mIoU_all`` averages over every class, an empty one counting 0 (the devkit's
    ``mean(IoU)``); on the full validation set every class occurs and the two agree.
    """
    classes = conf[1:, 1:]
    inter = np.diag(classes).astype(np.float64)
    gt_area = conf[1:, :].sum(axis=1).astype(np.float64)
    pred_area = classes.sum(axis=0).astype(np.float64)
    union = gt_area + pred_area - inter
    present = union > 0
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=present)
    labelled = conf[1:, :].sum()
    out = {"mIoU_all": float(iou.mean()), "pixel_acc": float(inter.sum() / labelled) if labelled else 0.0}
    if present.any():
        out["mIoU"] = float(iou[present].mean())
    return out
