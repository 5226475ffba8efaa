"""Classification transfer: each head trains and is evaluated through the suite's ``imagenet`` adapter.

The fixture is a generated ImageFolder (two real ImageNet wnids, 6 train / 4 val images each, coloured so
the classes are separable) with a generated 1,000-entry class index, so nothing here needs REPRO_DATA_DIR.
"""
import json

import pytest
import torch

from reproductions.catlip import models as M
from reproductions.catlip import transfer as TR
from reproductions.catlip import transfer_data as TD

WNIDS = ("n01440764", "n02102040")  # tench (index 0), English springer (index 217)
INDEX = {WNIDS[0]: 0, WNIDS[1]: 217}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("imagefolder")
    g = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("val", 4)):
        for c, wnid in enumerate(WNIDS):
            d = root / split / wnid
            d.mkdir(parents=True)
            for i in range(n):
                base = torch.tensor([200.0, 30.0, 30.0]) if c == 0 else torch.tensor([30.0, 30.0, 200.0])
                arr = (base + 40 * torch.rand(20, 24, 3, generator=g)).clamp(0, 255).to(torch.uint8).numpy()
                Image.fromarray(arr).save(d / f"{wnid}_{i}.JPEG")
    index = {str(i): [f"n9{i:07d}", f"class{i}"] for i in range(1000)}
    for w, i in INDEX.items():
        index[str(i)] = [w, w]
    (root / "class_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    torch.manual_seed(0)
    cfg = M.EncoderConfig("test", 16, 8, 1, 2, 16, 32, method="random")
    return M.save_encoder(M.build_from_config(cfg), cfg, tmp_path_factory.mktemp("enc") / "encoder")


def test_imagefolder_maps_outputs_to_imagenet_indices(folder):
    data = TD.imagefolder(folder, "train", folder / "class_index.json")
    assert data.label_names == WNIDS and data.task_index == (0, 217) and len(data.items) == 12
    one = TD.fraction(data, 1)
    assert sorted({y for _, y in one.items}) == [0, 1] and len(one.items) == 2  # at least one per class
    half = TD.fraction(data, 50)
    assert set(one.items) <= set(half.items) and len(half.items) == 6


def test_places365_official_lists(tmp_path):
    from PIL import Image

    (tmp_path / "categories_places365.txt").write_text("/a/airfield 0\n/r/restaurant_kitchen 1\n")
    (tmp_path / "val_256").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "val_256" / "Places365_val_00000001.jpg")
    (tmp_path / "places365_val.txt").write_text("Places365_val_00000001.jpg 1\n")
    data = TD.places365(tmp_path, "val")
    assert data.label_names == ("/a/airfield", "/r/restaurant_kitchen") and data.items[0][1] == 1
    (tmp_path / "places365_val.txt").write_text("Places365_val_00000001.jpg 7\n")
    with pytest.raises(TD.TransferDataError, match=r"places365_val.txt:1: expected"):
        TD.places365(tmp_path, "val")


def _evaluate(ckpt, folder, tmp_path):
    """One run through the runner: the imagenet task on the fixture's val split, the catlip-classifier system."""
    from suite.runner import execute
    from suite.spec import RunSpec

    spec = RunSpec.make("imagenet", "catlip-classifier", "smoke", split="val",
                        task_args={"layout": "imagefolder", "root": str(folder),
                                   "class_index": str(folder / "class_index.json"), "resize": 18, "crop": 16},
                        params={"model": "clf", "batch_size": 4})
    res = execute(spec, root=tmp_path / "runs", data_root=None, artifacts={"clf": ckpt}, device="cpu",
                  dtype="float32", quiet=True)
    return res.metrics["metrics"]


def test_linear_probe_trains_and_evaluates_through_the_imagenet_adapter(folder, encoder_dir, tmp_path):
    data = TD.imagefolder(folder, "train", folder / "class_index.json")
    enc = M.load_encoder(encoder_dir)
    proto = TR.EvalProtocol(resize=18, crop=16)
    feats = TR.encode(enc, data.files(), proto)
    labels = torch.tensor([y for _, y in data.items])
    head = TR.random_head(enc.width, data.num_classes)
    before = head.weight.clone()
    res = TR.fit_probe(feats, labels, head, TR.ProbeConfig(epochs=40, batch_size=4, lr=5e-2, min_lr=1e-3))
    assert not torch.equal(before, res.head.weight) and res.losses[-1] < res.losses[0]
    ckpt = TR.save_classifier(tmp_path / "lp", res.head, data, proto, mode="linear-probe", head_init="random",
                              encoder_dir=encoder_dir)
    m = _evaluate(ckpt, folder, tmp_path)
    assert m["top1"]["n"] == 8 and m["top5"]["value"] == 1.0  # two classes: both are always in the top 5
    assert m["top1"]["value"] > 0.5  # red vs blue images are separable by a probe even on random features


def test_finetune_trains_a_step_and_evaluates(folder, encoder_dir, tmp_path):
    data = TD.imagefolder(folder, "train", folder / "class_index.json")
    enc = M.load_encoder(encoder_dir)
    before = enc.conv_proj.weight.detach().clone()
    head = TR.random_head(enc.width, data.num_classes)
    res = TR.finetune(enc, head, data, TR.FinetuneConfig(epochs=1, batch_size=4, lr=1e-3, warmup_steps=0))
    assert len(res.losses) == 3 and not torch.equal(before, enc.conv_proj.weight)
    ckpt = TR.save_classifier(tmp_path / "ft", res.head, data, TR.EvalProtocol(18, 16), mode="finetune",
                              head_init="random", encoder=enc)
    back = TR.load_classifier(ckpt)
    assert torch.equal(back.encoder.conv_proj.weight, enc.conv_proj.weight)
    m = _evaluate(ckpt, folder, tmp_path)
    assert m["top1"]["n"] == 8


def test_transfer_init_head_copies_rows_of_matched_synsets(wordnet, tmp_path, folder):
    """Transfer Init on known synsets: 'tench' matches exactly; 'dog' is five hypernym edges above English springer
    (path similarity 1/6), so at alpha 0.15 its row is copied and at 0.5 the springer row stays random."""
    from reproductions.catlip.vocab import Vocab

    idx = wordnet.noun_index()
    offsets = [1440764, idx.first_sense("dog"), idx.first_sense("car")]
    vocab = Vocab(offsets=offsets, counts=[9, 8, 7], v_tau=1)
    torch.manual_seed(0)
    cfg = M.EncoderConfig("test", 16, 8, 1, 2, 16, 32, method="catlip")
    pre = torch.nn.Linear(16, 3)
    d = M.save_encoder(M.build_from_config(cfg), cfg, tmp_path / "catlip-enc",
                       extra_tensors={"weight": pre.weight, "bias": pre.bias})
    vocab.save(d / "vocab.json")
    data = TD.imagefolder(folder, "train", folder / "class_index.json")
    head, cov = TR.transfer_init_head(d, data, alpha=0.15)
    assert cov["exact"] == 1 and cov["similar"] == 1
    assert torch.allclose(head.weight[0], pre.weight[0]) and torch.allclose(head.weight[1], pre.weight[1])
    head, cov = TR.transfer_init_head(d, data, alpha=0.5)
    assert cov["exact"] == 1 and cov["unmatched"] == 1
    assert not torch.allclose(head.weight[1], pre.weight[1])


def test_classifier_identity_follows_the_weights(folder, encoder_dir, tmp_path):
    """A retrained head behind the same alias changes the system's identity (so old run records are dropped)."""
    from reproductions.catlip.systems import CatlipClassifier
    from suite.interfaces import RunContext

    data = TD.imagefolder(folder, "train", folder / "class_index.json")
    ckpt = TR.save_classifier(tmp_path / "clf", TR.random_head(16, 2, seed=0), data, TR.EvalProtocol(18, 16),
                              mode="linear-probe", head_init="random", encoder_dir=encoder_dir)
    ctx = RunContext(profile="smoke", data_root=None, artifacts={"clf": ckpt})
    first = CatlipClassifier({"model": "clf"}, ctx).identity()
    TR.save_classifier(tmp_path / "clf", TR.random_head(16, 2, seed=1), data, TR.EvalProtocol(18, 16),
                       mode="linear-probe", head_init="random", encoder_dir=encoder_dir)
    second = CatlipClassifier({"model": "clf"}, ctx).identity()
    assert first["weights_sha256"] != second["weights_sha256"]
    assert first["encoder_sha256"] == second["encoder_sha256"]
    with pytest.raises(FileNotFoundError, match="neither a prepared artifact"):
        CatlipClassifier({"model": "nope"}, ctx)
    with pytest.raises(ValueError, match="unknown parameter"):
        CatlipClassifier({"model": "clf", "temperature": 2}, ctx)
