"""Dense transfer (Tables 3-5): each head fine-tunes on a generated data set and is scored by the suite's adapters.

Fixtures are generated (``tests/fixtures/coco.py``: four images with polygons, a crowd RLE and an empty image;
``tests/fixtures/ade20k.py``: a tiny ADEChallengeData2016), the encoder is a random tiny ViT, and every
evaluation goes through ``suite.runner.execute`` exactly as a table cell does; nothing needs REPRO_DATA_DIR.
"""
import json
import shutil
from pathlib import Path

import pytest
import torch

from reproductions.catlip import dense as DN
from reproductions.catlip.dense_ckpt import DenseCheckpointError, load_dense
from reproductions.catlip.dense_detection import BackendUnavailable, ViTSimpleFPN, get_backend
from reproductions.catlip.dense_train import EpochSampler, FitConfig, fit, lr_at
from reproductions.catlip.models import EncoderConfig, build_from_config, build_image_encoder, save_encoder
from suite.interfaces import ImageRequest, RunContext
from suite.runner import execute
from suite.spec import RunSpec
from tests.fixtures.ade20k import make_ade20k
from tests.fixtures.coco import make_coco

TABLES = Path(__file__).resolve().parents[2] / "reproductions" / "catlip" / "tables"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """coco/coco_mini/{train2017,val2017} (the smoke recipe's paths) and ade20k/, all generated."""
    root = tmp_path_factory.mktemp("dense_data")
    for split in ("train2017", "val2017"):
        make_coco(root / "coco" / "coco_mini", split=split)
    make_ade20k(root / "ade20k", n_train=2, n_val=2)
    return root


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    torch.manual_seed(0)
    return save_encoder(build_image_encoder("tiny"), EncoderConfig.preset("tiny", method="random"),
                        tmp_path_factory.mktemp("enc") / "random")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, data_root, encoder_dir):
    out = tmp_path_factory.mktemp("dense_out")
    aliases = DN.prepare_dense({"catlip": encoder_dir}, out, "smoke", data_root, "cpu", log=None)
    return out, aliases


def _run(task, system, model, data_root, aliases, tmp_path, task_args, split="val2017"):
    spec = RunSpec.make(task, system, "smoke", split=split, task_args=task_args, params={"model": model,
                                                                                          "batch_size": 2})
    return execute(spec, root=tmp_path / "runs", data_root=data_root, artifacts=aliases, device="cpu",
                   dtype="float32", quiet=True)


def test_prepare_trains_every_head_and_reuses_them(prepared, data_root, encoder_dir):
    out, aliases = prepared
    assert set(aliases) == {"catlip-multilabel", "catlip-maskrcnn", "catlip-deeplabv3"}
    for alias, folder in aliases.items():
        record = json.loads((folder / "metrics.json").read_text())
        assert record["metrics"]["train_steps"]["value"] >= 1, alias
        assert not list(folder.glob("train_state-*")), "the resumable state is dropped once the model is saved"
    before = {a: (f / "model.safetensors").stat().st_mtime_ns for a, f in aliases.items()}
    logs = []
    again = DN.prepare_dense({"catlip": encoder_dir}, out, "smoke", data_root, "cpu", log=logs.append)
    assert again == aliases and all("reusing" in line for line in logs) and len(logs) == 3
    assert before == {a: (f / "model.safetensors").stat().st_mtime_ns for a, f in again.items()}


def test_multilabel_scored_by_coco_multilabel(prepared, data_root, tmp_path):
    _, aliases = prepared
    res = _run("coco_multilabel", "catlip-multilabel", "catlip-multilabel", data_root, aliases, tmp_path,
               {"root": "coco/coco_mini"})
    m = res.metrics["metrics"]
    assert res.metrics["n_examples"] == 4
    assert 0.0 <= m["mAP"]["value"] <= 1.0 and m["n_classes_with_positives"]["value"] == 4
    assert res.metrics["identity"]["kind"] == "multilabel" and len(res.metrics["identity"]["sha256"]) == 64


def test_detector_scored_by_coco_detection(prepared, data_root, tmp_path):
    _, aliases = prepared
    res = _run("coco_detection", "catlip-detector", "catlip-maskrcnn", data_root, aliases, tmp_path,
               {"root": "coco/coco_mini"})
    m = res.metrics["metrics"]
    assert "bbox_AP" in m and "segm_AP" in m
    assert -1.0 <= m["bbox_AP"]["value"] <= 1.0  # COCOeval gives -1 when nothing can be matched


def test_detector_outputs_coco_ids_xywh_and_rle_in_image_pixels(prepared, data_root):
    from suite.registry import SYSTEMS
    from suite.vision import rle

    _, aliases = prepared
    ctx = RunContext(profile="smoke", data_root=data_root, artifacts=aliases)
    system = SYSTEMS.get("catlip-detector")({"model": "catlip-maskrcnn"}, ctx)
    system.dm.model.roi_heads.score_thresh = 0.0  # an untrained head scores low: keep everything
    path = data_root / "coco" / "coco_mini" / "val2017" / "000000000003.jpg"  # 200 x 150
    det = system.predict([ImageRequest(path=path, width=200, height=150, num_classes=80)], [None])[0]
    assert len(det.boxes) > 0
    valid = set(system.labels["category_ids"])
    for (x, y, w, h), label, m in zip(det.boxes, det.labels, det.masks):
        assert 0 <= x and 0 <= y and w >= 0 and h >= 0 and x + w <= 200.01 and y + h <= 150.01
        assert label in valid
        assert list(m["size"]) == [150, 200] and rle.decode(m).shape == (150, 200)


def test_segmenter_scored_by_ade20k(prepared, data_root, tmp_path):
    _, aliases = prepared
    res = _run("ade20k", "catlip-segmenter", "catlip-deeplabv3", data_root, aliases, tmp_path, {}, split="validation")
    m = res.metrics["metrics"]
    assert res.metrics["n_examples"] == 2 and 0.0 <= m["mIoU"]["value"] <= 1.0


def test_system_errors_name_the_parameter(prepared, data_root):
    from reproductions.catlip.dense_systems import CatlipDetector, SystemConfigError

    _, aliases = prepared
    ctx = RunContext(profile="smoke", data_root=data_root, artifacts=aliases)
    with pytest.raises(SystemConfigError, match="model='nope'"):
        CatlipDetector({"model": "nope"}, ctx)
    with pytest.raises(SystemConfigError, match="multilabel checkpoint, expected maskrcnn"):
        CatlipDetector({"model": "catlip-multilabel"}, ctx)
    with pytest.raises(SystemConfigError, match="unknown parameter"):
        CatlipDetector({"model": "catlip-maskrcnn", "thresh": 0.3}, ctx)


def test_bad_checkpoint_names_the_file(prepared, tmp_path):
    _, aliases = prepared
    bad = tmp_path / "bad"
    shutil.copytree(aliases["catlip-multilabel"], bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["head"]["num_classes"] = 81
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(DenseCheckpointError, match=r"model\.safetensors: does not fit config\.json"):
        load_dense(bad)
    (bad / "config.json").write_text("{}")
    with pytest.raises(DenseCheckpointError, match=r"config\.json: field 'format'"):
        load_dense(bad)


@pytest.mark.parametrize("patch", [8, 16])
def test_simple_feature_pyramid_strides(patch):
    enc = build_from_config(EncoderConfig("t", 32, patch, 1, 2, 32, 64))
    sfp = ViTSimpleFPN(enc, 16)
    feats = sfp(torch.zeros(1, 3, 64, 96))
    assert [tuple(v.shape[-2:]) for v in feats.values()] == [(16, 24), (8, 12), (4, 6), (2, 3), (1, 2)]
    assert all(v.shape[1] == 16 for v in feats.values())


def test_detectron2_backend_says_how_to_install():
    try:
        import detectron2  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailable, match="build it from source"):
            get_backend("detectron2")
    else:
        pytest.skip("detectron2 is installed here; the unavailable path cannot be exercised")
    with pytest.raises(ValueError, match="unknown detector backend 'mmdet'"):
        get_backend("mmdet")


def test_schedules_follow_the_recipe():
    cos = FitConfig(steps=100, batch_size=1, lr=1.0, min_lr=0.1, warmup_steps=10, warmup_init_lr=0.0)
    assert lr_at(0, cos) == 0.0 and lr_at(5, cos) == pytest.approx(0.5) and lr_at(10, cos) == pytest.approx(1.0)
    assert lr_at(100, cos) == pytest.approx(0.1)
    ms = FitConfig(steps=25, batch_size=1, lr=1.0, schedule="multistep", milestones=(22 / 25, 24 / 25))
    assert [lr_at(s, ms) for s in (21, 22, 24)] == [pytest.approx(1.0), pytest.approx(0.1), pytest.approx(0.01)]


def test_sampler_visits_every_item_once_per_epoch():
    s = EpochSampler(10, 4, seed=3)
    seen = s.next_batch() + s.next_batch() + s.next_batch()[:2]
    assert sorted(seen) == list(range(10))


def test_fit_resumed_equals_uninterrupted(tmp_path):
    def make():
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))

    data = [torch.randn(3, generator=torch.Generator().manual_seed(i)) for i in range(7)]

    def step_loss(model, batch, gen):
        x = torch.stack(batch)
        return ((model(x) - torch.rand(len(batch), 1, generator=gen)) ** 2).mean()

    cfg = FitConfig(steps=6, batch_size=3, lr=1e-2, warmup_steps=2)
    kw = dict(device="cpu", encoder_prefix="0.", num_layers=1, log=None)
    a = make()
    ra = fit(a, step_loss, data, cfg, tmp_path / "a", **kw)
    b = make()
    fit(b, step_loss, data, cfg, tmp_path / "b", max_steps_this_run=4, **kw)
    b2 = make()
    rb = fit(b2, step_loss, data, cfg, tmp_path / "b", **kw)
    assert rb.resumed_from == 4 and rb.losses == pytest.approx(ra.losses)
    for pa, pb in zip(a.parameters(), b2.parameters()):
        assert torch.allclose(pa, pb)


@pytest.mark.parametrize("profile", ["smoke", "mini", "paper"])
@pytest.mark.parametrize("name", ["table3_coco_multilabel", "table4_ade20k", "table5_coco_detection", "dense_finetuning"])
def test_table_specs_load(name, profile):
    from suite.tables import load_table

    spec = load_table(TABLES / f"{name}.yaml", profile)
    assert spec.skipped or spec.rows


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["multilabel", "maskrcnn"])
def test_two_process_ddp_training(tmp_path, data_root, encoder_dir, kind):
    """torchrun with 2 CPU processes (gloo): one model, trained data-parallel, saved once, loadable."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "reproductions.catlip.dense", "--encoder", f"catlip={encoder_dir}", "--out", str(tmp_path / "o"),
           "--profile", "smoke", "--data-root", str(data_root), "--device", "cpu", "--kind", kind]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    cfg = json.loads((tmp_path / "o" / f"catlip-{kind}" / "config.json").read_text())
    assert cfg["training"]["world_size"] == 2
    load_dense(tmp_path / "o" / f"catlip-{kind}")


def test_missing_training_data_names_the_file(tmp_path, encoder_dir):
    from reproductions.catlip.dense_data import DenseDataError

    with pytest.raises(DenseDataError, match=r"instances_train2017\.json: training annotations not found"):
        DN.prepare_dense({"catlip": encoder_dir}, tmp_path / "o", "mini", tmp_path, "cpu", kinds=["multilabel"],
                         log=None)
