"""ImageNet adapter: every label-file form maps to the same 0..999 labels; oracle 1.0, wrong 0.0."""
from pathlib import Path

import pytest

from suite.data import DataMissing
from suite.interfaces import ClassScores, ImageRequest
from suite.runner import execute
from suite.spec import RunSpec
from suite.tasks.imagenet import ImageNetTask
from suite.vision.imagenet_labels import LabelFileError
from tests.fixtures.imagenet import VAL_LABELS, make_imagefolder, make_val, write_class_index
from tests.fixtures.realdata import need


@pytest.fixture()
def class_index(tmp_path) -> Path:
    return write_class_index(tmp_path / "meta" / "imagenet_class_index.json")


def _labels(task, root) -> dict[str, int]:
    return {ex.id: ex.data["label"] for ex in task.examples("val", root)}


EXPECTED_VAL = {f"ILSVRC2012_val_{k:08d}": v for k, v in VAL_LABELS.items()}


@pytest.mark.parametrize("style", ["caffe", "tsv", "devkit"])
def test_val_layout_every_label_style_gives_the_same_labels(tmp_path, class_index, style):
    make_val(tmp_path / "val", style)
    task = ImageNetTask(root=str(tmp_path / "val"), class_index=str(class_index))
    assert _labels(task, None) == EXPECTED_VAL
    files = task.data_files("test", None)  # test is the val alias
    assert len([f for f in files if f.suffix == ".JPEG"]) == len(VAL_LABELS)


def test_devkit_ids_go_through_meta_mat_not_the_sorted_order(tmp_path, class_index):
    make_val(tmp_path / "val", "devkit")
    gt = (tmp_path / "val" / "ILSVRC2012_validation_ground_truth.txt").read_text().split()
    assert gt[0] == "935"  # ILSVRC2012_ID 935 is sorted index 65 in the fixture's meta.mat
    labels = _labels(ImageNetTask(root=str(tmp_path / "val"), class_index=str(class_index)), None)
    assert labels["ILSVRC2012_val_00000001"] == 65


def test_caffe_labels_with_dataset_txt_variant(tmp_path, class_index):
    root = make_val(tmp_path / "val", "caffe")
    (root / "val.txt").unlink()
    (root / "dataset.txt").write_text("".join(f"./data/ILSVRC2012_val_{k:08d}.JPEG, {v}\n"
                                              for k, v in VAL_LABELS.items()))
    assert _labels(ImageNetTask(root=str(root)), None) == EXPECTED_VAL


def test_missing_image_and_subset(tmp_path):
    root = make_val(tmp_path / "val", "caffe")
    (root / "images" / "ILSVRC2012_val_00000003.JPEG").unlink()
    task = ImageNetTask(root=str(root))
    with pytest.raises(DataMissing, match=r"val\.txt:3: image ILSVRC2012_val_00000003\.JPEG not found"):
        list(task.examples("val", None))
    assert len(_labels(ImageNetTask(root=str(root), subset=True), None)) == len(VAL_LABELS) - 1


def test_bad_label_line_names_file_and_line(tmp_path):
    root = make_val(tmp_path / "val", "caffe")
    (root / "val.txt").write_text("ILSVRC2012_val_00000001.JPEG 65\nILSVRC2012_val_00000002.JPEG 1000\n")
    with pytest.raises(LabelFileError, match=r"val\.txt:2: label 1000 is outside 0\.\.999"):
        list(ImageNetTask(root=str(root), subset=True).examples("val", None))


def test_imagefolder_maps_wnids_to_the_1k_index(tmp_path, class_index):
    root = make_imagefolder(tmp_path / "inet", classes=(999, 0, 217))
    task = ImageNetTask(root=str(root), class_index=str(class_index))
    exs = list(task.examples("val", None))
    assert len(exs) == 9 and sorted({e.data["label"] for e in exs}) == [0, 217, 999]
    assert exs[0].id.endswith("/img_0_0")
    req = task.request(exs[0])
    assert isinstance(req, ImageRequest) and (req.resize, req.crop, req.num_classes) == (256, 224, 1000)
    (root / "val" / "n99999999").mkdir()
    with pytest.raises(ValueError, match="n99999999.*not an ImageNet-1k wnid"):
        list(task.examples("val", None))


def test_scores_top1_top5():
    task = ImageNetTask()
    from suite.interfaces import Example
    ex = Example("x", {"label": 7, "path": "x"})
    assert task.score(ex, ClassScores([7, 1, 2, 3, 4], [0.0] * 5)) == {"top1": 1.0, "top5": 1.0}
    assert task.score(ex, ClassScores([1, 2, 3, 4, 7], [0.0] * 5)) == {"top1": 0.0, "top5": 1.0}
    assert task.score(ex, ClassScores([1, 2, 3, 4, 5, 7], [0.0] * 6)) == {"top1": 0.0, "top5": 0.0}


def test_oracle_and_wrong_through_the_runner(tmp_path, class_index):
    root = make_imagefolder(tmp_path / "inet")
    args = {"root": str(root), "class_index": str(class_index)}
    for system, want in (("oracle", 1.0), ("wrong", 0.0)):
        spec = RunSpec.make("imagenet", system, "smoke", split="val", task_args=args, params={"batch_size": 4})
        m = execute(spec, root=tmp_path / "runs", data_root=None, quiet=True).metrics["metrics"]
        assert m["top1"]["value"] == want and m["top5"]["value"] == want and m["top1"]["n"] == 9


@pytest.mark.parametrize("rel,split", [("imagenet/val_1300_227px", "test"), ("imagenet/imagenette_112", "val")])
def test_real_folders_oracle_is_perfect(tmp_path, real_data, rel, split):
    need(real_data, rel)
    spec = RunSpec.make("imagenet", "oracle", "smoke", split=split, limit=150, task_args={"root": rel})
    m = execute(spec, root=tmp_path, data_root=real_data, quiet=True).metrics["metrics"]
    assert m["top1"]["value"] == 1.0 and m["top1"]["n"] == 150


def test_real_val_label_files_agree(real_data):
    """dataset.txt (caffe), labels.tsv (with wnids) and the full 50,000-line caffe file give the same labels."""
    root = need(real_data, "imagenet/val_1300_227px")
    need(real_data, "imagenet/meta/ILSVRC2012_val_labels_caffe.txt")
    by = {}
    for labels, subset in (("dataset.txt", False), ("labels.tsv", False),
                           ("imagenet/meta/ILSVRC2012_val_labels_caffe.txt", True)):
        task = ImageNetTask(root=str(root), labels=labels, subset=subset)
        by[labels] = _labels(task, real_data)
    first, *rest = by.values()
    assert len(first) == 1300 and all(r == first for r in rest)


def test_flat_layout_with_other_label_spaces(tmp_path):
    """Places365's val layout: flat folder + caffe-style file, labels 0..364."""
    from PIL import Image

    root = tmp_path / "places365"
    (root / "val_256").mkdir(parents=True)
    for k in (1, 2):
        Image.new("RGB", (8, 8)).save(root / "val_256" / f"Places365_val_{k:08d}.jpg")
    (root / "places365_val.txt").write_text("Places365_val_00000001.jpg 364\nPlaces365_val_00000002.jpg 0\n")
    task = ImageNetTask(layout="val", root=str(root), images="val_256", labels="places365_val.txt", num_classes=365)
    exs = list(task.examples("val", None))
    assert [e.data["label"] for e in exs] == [364, 0] and task.request(exs[0]).num_classes == 365
    (root / "places365_val.txt").write_text("Places365_val_00000001.jpg 365\nPlaces365_val_00000002.jpg 0\n")
    with pytest.raises(LabelFileError, match=r"places365_val\.txt:1: label 365 is outside 0\.\.364"):
        list(task.examples("val", None))
