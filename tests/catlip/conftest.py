import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def wordnet():
    from reproductions.catlip import wordnet as W
    try:
        W.ensure_wordnet()
    except W.WordNetMissing as e:
        pytest.skip(str(e))
    return W


@pytest.fixture(scope="session")
def data_dir():
    d = os.environ.get("REPRO_DATA_DIR")
    if not d:
        pytest.skip("REPRO_DATA_DIR is not set (needs image_text_coco_mini/ and imagenet/meta/)")
    p = Path(d)
    if not (p / "image_text_coco_mini" / "pairs.jsonl").is_file():
        pytest.skip(f"REPRO_DATA_DIR={d} has no image_text_coco_mini/pairs.jsonl")
    return p


@pytest.fixture(scope="session")
def pairs(data_dir):
    from reproductions.catlip import data as D
    return D.read_manifest(data_dir / "image_text_coco_mini" / "pairs.jsonl")


@pytest.fixture(scope="session")
def extractor(wordnet):
    from reproductions.catlip.labels import LabelExtractor
    return LabelExtractor()


_WORDS = ["dog", "cat", "man", "woman", "table", "car", "horse", "pizza", "bus", "kitchen"]


@pytest.fixture(scope="session")
def synthetic_manifest(tmp_path_factory):
    """12 generated JPEGs x 2 captions: lets the data/train tests run without REPRO_DATA_DIR."""
    import json

    from PIL import Image
    d = tmp_path_factory.mktemp("synthetic_pairs")
    g = torch.Generator().manual_seed(0)
    with open(d / "pairs.jsonl", "w") as f:
        for i in range(12):
            arr = (torch.rand(40, 48, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(arr).save(d / f"img{i:02d}.jpg")
            a, b = _WORDS[i % 10], _WORDS[(3 * i + 1) % 10]
            caps = [f"A {a} next to a {b}.", f"the {b} and the {a} on a street"]
            f.write(json.dumps({"image_path": f"img{i:02d}.jpg", "captions": caps}) + "\n")
    return d / "pairs.jsonl"
