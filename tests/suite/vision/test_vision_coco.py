"""COCO adapters: AP by pycocotools from records alone; oracle 1, wrong 0, perturbed = direct pycocotools."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from suite.data import DataMissing
from suite.runner import execute
from suite.spec import RunSpec
from suite.tasks.coco import CocoDetectionTask
from suite.vision.coco import CocoFormatError, load_instances
from tests.fixtures.coco import make_coco
from tests.fixtures.realdata import need

SHIFT = 6


def _run(tmp_path, task, system, task_args, split="val2017", data_root=None, params=None, limit=None):
    spec = RunSpec.make(task, system, "smoke", split=split, task_args=task_args, params=params or {}, limit=limit)
    return execute(spec, root=tmp_path / "runs", data_root=data_root, quiet=True).metrics["metrics"]


# ----------------------------------------------------------------------------- direct pycocotools (no suite code)


def _shifted_rows(ann_file: Path, k: int) -> tuple[list, list]:
    """GT non-crowd annotations shifted by k px right and down, as bbox and segm results rows."""
    data = json.loads(Path(ann_file).read_text())
    sizes = {im["id"]: (im["height"], im["width"]) for im in data["images"]}
    boxes, segms = [], []
    for a in data["annotations"]:
        if a["iscrowd"]:
            continue
        x, y, w, h = a["bbox"]
        boxes.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x + k, y + k, w, h],
                      "score": 1.0})
        ih, iw = sizes[a["image_id"]]
        m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], ih, iw)))
        moved = np.zeros_like(m)
        moved[k:, k:] = m[:ih - k, :iw - k]
        rle = mask_utils.encode(np.asfortranarray(moved))
        rle["counts"] = rle["counts"].decode()
        segms.append({"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": rle,
                      "score": 1.0})
    return boxes, segms


def _direct_ap(ann_file: Path, rows: list, iou_type: str) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(rows), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats[:6]]


def _suite_ap(m: dict, prefix: str) -> list[float]:
    return [m[f"{prefix}_{k}"]["value"] if f"{prefix}_{k}" in m else -1.0
            for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")]


# ----------------------------------------------------------------------------- fixture


def test_oracle_perfect_wrong_zero_on_fixture_without_info(tmp_path):
    root = make_coco(tmp_path / "coco", with_info=False)
    args = {"root": str(root)}
    m = _run(tmp_path, "coco_detection", "oracle", args, params={"batch_size": 3})
    assert _suite_ap(m, "bbox")[:3] == [1.0, 1.0, 1.0] and _suite_ap(m, "segm")[:3] == [1.0, 1.0, 1.0]
    assert all(v["value"] == pytest.approx(1.0, abs=1e-12) for v in m.values())
    w = _run(tmp_path, "coco_detection", "wrong", args)
    assert all(v["value"] == 0.0 for v in w.values()) and "bbox_AP" in w and "segm_AP" in w


def test_perturbed_ap_equals_pycocotools_directly_on_fixture(tmp_path):
    root = make_coco(tmp_path / "coco")
    m = _run(tmp_path, "coco_detection", "perturbed", {"root": str(root)}, params={"shift_px": SHIFT})
    boxes, segms = _shifted_rows(root / "annotations" / "instances_val2017.json", SHIFT)
    ann = root / "annotations" / "instances_val2017.json"
    assert _suite_ap(m, "bbox") == pytest.approx(_direct_ap(ann, boxes, "bbox"), abs=1e-12)
    assert _suite_ap(m, "segm") == pytest.approx(_direct_ap(ann, segms, "segm"), abs=1e-12)
    assert 0.0 < m["bbox_AP"]["value"] < 1.0


def test_records_hold_results_rows_and_bootstrap_gives_a_ci(tmp_path):
    root = make_coco(tmp_path / "coco")
    spec = RunSpec.make("coco_detection", "perturbed", "smoke", split="val2017", params={"shift_px": 2},
                        task_args={"root": str(root), "bootstrap_resamples": 20})
    res = execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)
    rec = json.loads((res.path / "records.jsonl").read_text().splitlines()[0])
    row = rec["outputs"][0][0]
    assert rec["id"] == "42" and set(row) == {"image_id", "category_id", "bbox", "score", "segmentation"}
    assert isinstance(row["segmentation"]["counts"], str)
    ap = res.metrics["metrics"]["bbox_AP"]
    assert ap["ci95"] is not None and ap["ci95"][0] <= ap["ci95"][1] and "20 resamples" in ap["ci_method"]


def test_bootstrap_duplicates_count_twice(tmp_path):
    """An image drawn twice is two images to COCOeval: its ground truth and its detections both doubled."""
    root = make_coco(tmp_path / "coco")
    task = CocoDetectionTask(root=str(root))
    from suite.systems.reference import PerturbedSystem
    system = PerturbedSystem({"shift_px": 4}, None)
    exs = {e.id: e for e in task.examples("val2017", None)}
    recs = {i: {"id": i, "outputs": [task.evidence(e, system.generate(None, e))]} for i, e in exs.items()}
    sample = [{**recs["42"], "id": "42#0"}, {**recs["7"], "id": "7#1"}, {**recs["42"], "id": "42#2"}]
    got = task.aggregate(sample)
    # the same sample written out by hand as a COCO file with three distinct images
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    images = {im["id"]: im for im in data["images"]}
    gt = {**data, "images": [], "annotations": []}
    rows = []
    for new_id, old_id in enumerate([42, 7, 42], 1):
        gt["images"].append({**images[old_id], "id": new_id})
        gt["annotations"] += [{**a, "image_id": new_id, "id": 1000 * new_id + a["id"]}
                              for a in data["annotations"] if a["image_id"] == old_id]
        rows += [{**r, "image_id": new_id} for r in recs[str(old_id)]["outputs"][0]]
    path = tmp_path / "doubled.json"
    path.write_text(json.dumps(gt))
    want = _direct_ap(path, [{k: v for k, v in r.items() if k != "segmentation"} for r in rows], "bbox")
    assert _suite_ap(_as_metrics(got), "bbox") == pytest.approx(want, abs=1e-12)
    assert got["bbox_AP"] != task.aggregate([recs["42"], recs["7"]])["bbox_AP"]


def _as_metrics(values: dict) -> dict:
    return {k: {"value": v} for k, v in values.items()}


def test_multilabel_oracle_wrong_and_sklearn_ap(tmp_path):
    average_precision_score = pytest.importorskip("sklearn.metrics",
                                                  reason="the reference AP implementation is sklearn's"
                                                  ).average_precision_score

    root = make_coco(tmp_path / "coco")
    args = {"root": str(root)}
    assert _run(tmp_path, "coco_multilabel", "oracle", args)["mAP"]["value"] == 1.0
    w = _run(tmp_path, "coco_multilabel", "wrong", args)
    # positives ranked last; crowd annotations count (image 7 holds class id 1 as crowd and as non-crowd)
    data = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    cats = sorted(c["id"] for c in data["categories"])
    y = np.zeros((len(data["images"]), 80), dtype=int)
    row = {im["id"]: i for i, im in enumerate(data["images"])}
    for a in data["annotations"]:
        y[row[a["image_id"]], cats.index(a["category_id"])] = 1
    present = y.any(axis=0)
    want = np.mean([average_precision_score(y[:, c], 1 - y[:, c]) for c in np.flatnonzero(present)])
    assert w["mAP"]["value"] == pytest.approx(want) and w["mAP"]["value"] < 1.0
    assert w["n_classes_with_positives"]["value"] == present.sum()


def test_format_errors_name_file_and_field(tmp_path):
    root = make_coco(tmp_path / "coco")
    ann = root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["annotations"][2]["image_id"] = 555
    bad = tmp_path / "dangling.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=r"dangling\.json: annotations\[2\] \(id 103\)\.image_id: image 555"):
        load_instances(bad)
    torn = tmp_path / "torn.json"
    torn.write_text(ann.read_text()[:200])
    with pytest.raises(CocoFormatError, match=r"torn\.json:1: not valid JSON"):
        load_instances(torn)
    del data["images"][1]["file_name"]
    nofile = tmp_path / "nofield.json"
    nofile.write_text(json.dumps(data))
    with pytest.raises(CocoFormatError, match=r"nofield\.json: images\[1\]: missing field 'file_name'"):
        load_instances(nofile)
    (root / "val2017" / "000000001001.jpg").unlink()
    with pytest.raises(DataMissing, match=r"images\[2\] \(id 1001\)\.file_name: 000000001001\.jpg not found"):
        list(CocoDetectionTask(root=str(root)).examples("val2017", None))


# ----------------------------------------------------------------------------- real data


@pytest.mark.slow
@pytest.mark.parametrize("rel,split", [("coco/coco_mini", "val2017"), ("coco/coco128", "train2017")])
def test_real_coco_oracle_perfect_wrong_zero(tmp_path, real_data, rel, split):
    need(real_data, rel)
    args = {"root": rel}
    m = _run(tmp_path, "coco_detection", "oracle", args, split=split, data_root=real_data)
    assert m["bbox_AP"]["value"] == 1.0 and m["segm_AP"]["value"] == 1.0
    w = _run(tmp_path, "coco_detection", "wrong", args, split=split, data_root=real_data)
    assert w["bbox_AP"]["value"] == 0.0 and w["segm_AP"]["value"] == 0.0


@pytest.mark.slow
def test_real_coco128_perturbed_equals_pycocotools(tmp_path, real_data):
    """coco128 holds 10 crowd annotations stored as uncompressed RLE."""
    root = need(real_data, "coco/coco128")
    m = _run(tmp_path, "coco_detection", "perturbed", {"root": "coco/coco128"}, split="train2017",
             data_root=real_data, params={"shift_px": SHIFT})
    ann = root / "annotations" / "instances_train2017.json"
    boxes, segms = _shifted_rows(ann, SHIFT)
    assert _suite_ap(m, "bbox") == pytest.approx(_direct_ap(ann, boxes, "bbox"), abs=1e-12)
    assert _suite_ap(m, "segm") == pytest.approx(_direct_ap(ann, segms, "segm"), abs=1e-12)


def test_cli_bad_annotation_file_exits_2_with_one_line(tmp_path, capsys):
    from suite.cli import main

    root = make_coco(tmp_path / "coco")
    ann = root / "annotations" / "instances_val2017.json"
    data = json.loads(ann.read_text())
    data["annotations"][0]["category_id"] = 12  # not a COCO category id
    ann.write_text(json.dumps(data))
    rc = main(["run", "--task", "coco_detection", "--system", "oracle", "--split", "val2017", "--task-arg",
               f"root={root}", "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "instances_val2017.json: annotations[0] (id 101).category_id: category 12 is not in categories" in err
