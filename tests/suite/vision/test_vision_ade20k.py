"""ADE20k adapter on a generated dataset: records hold confusion counts only; mIoU checked by hand."""
import json

import numpy as np
import pytest
from PIL import Image

from suite.data import DataMissing
from suite.interfaces import Example, SegmentationMap
from suite.runner import execute
from suite.spec import RunSpec
from suite.tasks.ade20k import Ade20kTask
from tests.fixtures.ade20k import make_ade20k

SHIFT = 5


def _run(tmp_path, root, system, params=None, task_args=None):
    spec = RunSpec.make("ade20k", system, "smoke", split="validation", params=params or {},
                        task_args={"root": str(root), **(task_args or {})})
    return execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)


def _maps(root, split="validation"):
    return [np.asarray(Image.open(p)) for p in sorted((root / "annotations" / split).glob("*.png"))]


def _by_hand(gts, preds):
    """IoU per class over labelled pixels (ADE ids 1..150), written independently of suite.vision.metrics."""
    inter, union, correct, labelled = {}, {}, 0, 0
    for gt, pred in zip(gts, preds):
        lab = gt > 0
        correct += int(((gt == pred) & lab).sum())
        labelled += int(lab.sum())
        for c in range(1, 151):
            g, p = (gt == c), (pred == c) & lab
            if g.any() or p.any():
                inter[c] = inter.get(c, 0) + int((g & p).sum())
                union[c] = union.get(c, 0) + int((g | p).sum())
    ious = [inter[c] / union[c] for c in union if union[c] > 0]
    return float(np.mean(ious)), correct / labelled, float(np.sum(ious) / 150)


def test_fixture_layout_palette_and_grayscale(tmp_path):
    root = make_ade20k(tmp_path)
    modes = {Image.open(p).mode for p in (root / "annotations" / "validation").glob("*.png")}
    assert modes == {"P", "L"}
    maps = _maps(root)
    assert all(m.max() == 150 and m.min() == 0 for m in maps)
    exs = list(Ade20kTask(root=str(root)).examples("val", None))
    assert [e.id for e in exs] == ["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"]


def test_oracle_one_wrong_zero_and_records_hold_no_mask(tmp_path):
    root = make_ade20k(tmp_path)
    res = _run(tmp_path, root, "oracle", params={"batch_size": 2})
    m = res.metrics["metrics"]
    assert m["mIoU"]["value"] == 1.0 and m["pixel_acc"]["value"] == 1.0
    assert m["mIoU_all"]["value"] < 1.0  # the devkit's mean over all 150: classes absent here count 0
    rec = json.loads((res.path / "records.jsonl").read_text().splitlines()[0])
    triples = rec["outputs"][0]
    assert all(len(t) == 3 and 1 <= t[0] <= 150 and t[0] == t[1] for t in triples)
    h, w = _maps(root)[0].shape
    assert sum(t[2] for t in triples) == int((_maps(root)[0] > 0).sum()) < h * w
    wm = _run(tmp_path, root, "wrong").metrics["metrics"]
    assert wm["mIoU"]["value"] == 0.0 and wm["pixel_acc"]["value"] == 0.0


def test_perturbed_miou_matches_a_direct_computation(tmp_path):
    root = make_ade20k(tmp_path)
    m = _run(tmp_path, root, "perturbed", params={"shift_px": SHIFT}, task_args={"bootstrap_resamples": 30}
             ).metrics["metrics"]
    gts = _maps(root)
    preds = []
    for gt in gts:
        p = np.zeros_like(gt)  # shifted right/down by SHIFT; the uncovered strip predicts no class
        p[SHIFT:, SHIFT:] = gt[:-SHIFT, :-SHIFT]
        preds.append(p)
    miou, acc, miou_all = _by_hand(gts, preds)
    assert m["mIoU"]["value"] == pytest.approx(miou) and m["pixel_acc"]["value"] == pytest.approx(acc)
    assert m["mIoU_all"]["value"] == pytest.approx(miou_all)
    assert 0 < miou < 1 and m["mIoU"]["ci95"] is not None


def test_prediction_outside_label_space_is_wrong_not_an_error():
    task = Ade20kTask()
    gt = np.array([[0, 1], [2, 150]], dtype=np.uint8)
    from suite.vision.metrics import confusion_counts
    assert confusion_counts(gt, np.array([[5, 1], [0, 999]]), 150) == [[1, 1, 1], [2, 0, 1], [150, 0, 1]]
    with pytest.raises(TypeError, match="expected SegmentationMap"):
        task.evidence(Example("x", {"annotation_path": "x"}), object())


def test_shape_mismatch_and_missing_annotation_are_one_line_errors(tmp_path):
    root = make_ade20k(tmp_path)
    task = Ade20kTask(root=str(root))
    ex = next(task.examples("validation", None))
    with pytest.raises(ValueError, match=r"ADE_val_00000001: prediction shape \(2, 2\) != annotation shape"):
        task.evidence(ex, SegmentationMap(labels=np.zeros((2, 2), dtype=int)))
    (root / "annotations" / "validation" / "ADE_val_00000002.png").unlink()
    with pytest.raises(DataMissing, match=r"annotation .*ADE_val_00000002\.png not found"):
        list(task.examples("validation", None))
