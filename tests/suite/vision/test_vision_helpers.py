"""RLE conversions, shifts and the classification transform."""
import numpy as np
import pytest
from PIL import Image

from suite.interfaces import ImageRequest
from suite.vision import rle
from suite.vision.images import load_for_classification, load_label_map
from tests.fixtures.coco import _uncompressed_rle


def test_polygon_uncompressed_and_compressed_rle_agree():
    m = np.zeros((20, 30), dtype=np.uint8)
    m[5:15, 10:20] = 1
    from_poly = rle.decode(rle.from_segmentation([[10, 5, 20, 5, 20, 15, 10, 15]], 20, 30))
    from_unc = rle.decode(rle.from_segmentation(_uncompressed_rle(m), 20, 30))
    compressed = rle.encode(m)
    assert isinstance(compressed["counts"], str)
    assert (from_unc == m).all() and (rle.decode(rle.from_segmentation(compressed, 20, 30)) == m).all()
    assert abs(int(from_poly.sum()) - 100) <= 25  # polygon rasterisation covers the 10x10 square up to its edges
    with pytest.raises(ValueError, match="not a COCO segmentation"):
        rle.from_segmentation(42, 20, 30)


@pytest.mark.parametrize("dx,dy", [(3, 2), (-4, 1), (0, 0), (40, 0)])
def test_shift_moves_the_mask_and_cuts_at_the_border(dx, dy):
    m = np.zeros((20, 30), dtype=np.uint8)
    m[5:15, 10:20] = 1
    got = rle.decode(rle.shift(rle.encode(m), dx, dy))
    want = np.zeros_like(m)
    for y, x in zip(*np.nonzero(m)):
        if 0 <= y + dy < 20 and 0 <= x + dx < 30:
            want[y + dy, x + dx] = 1
    assert (got == want).all()


def test_classification_transform_follows_the_request(tmp_path):
    p = tmp_path / "x.jpg"
    Image.fromarray(np.zeros((30, 50), dtype=np.uint8)).save(p)  # grayscale becomes 3 channels
    t = load_for_classification(ImageRequest(path=p, resize=32, crop=24))
    assert tuple(t.shape) == (3, 24, 24)
    assert tuple(load_for_classification(ImageRequest(path=p), default_size=16).shape) == (3, 16, 16)


def test_label_map_reads_palette_indices_not_colours(tmp_path):
    m = np.array([[0, 7], [150, 3]], dtype=np.uint8)
    im = Image.fromarray(m, mode="P")
    im.putpalette([255] * 768)
    im.save(tmp_path / "a.png")
    assert (load_label_map(tmp_path / "a.png") == m).all()
    Image.fromarray(np.zeros((2, 2, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="rgb.png: label map must be a single-channel PNG"):
        load_label_map(tmp_path / "rgb.png")


def test_average_precision_is_sklearns_definition_with_ties():
    average_precision_score = pytest.importorskip("sklearn.metrics",
                                                  reason="the reference AP implementation is sklearn's"
                                                  ).average_precision_score

    from suite.vision.metrics import average_precision, multilabel_map

    rng = np.random.default_rng(0)
    for trial in range(50):
        n = int(rng.integers(2, 40))
        y = rng.integers(0, 2, size=n)
        if not y.any():
            y[0] = 1
        s = rng.integers(0, 5, size=n).astype(float) if trial % 2 else rng.normal(size=n)  # ties on odd trials
        assert average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    y = rng.integers(0, 2, size=(30, 6))
    y[:, 5] = 0  # a class without positives is left out of mAP
    s = rng.normal(size=(30, 6))
    got = multilabel_map(y, s)
    assert got["mAP"] == pytest.approx(np.mean([average_precision_score(y[:, c], s[:, c]) for c in range(5)]))
    assert got["mAP_micro"] == pytest.approx(average_precision_score(y, s, average="micro"))
    assert got["n_classes_with_positives"] == 5
