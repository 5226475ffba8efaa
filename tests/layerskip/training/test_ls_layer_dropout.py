import math

import pytest
import torch

from reproductions.layerskip.training.layer_dropout import LayerDropout, depth_scale, dropout_rates, time_scale


def test_depth_scale_endpoints_and_shape():
    L = 8
    d = [depth_scale(l, L) for l in range(L)]
    assert d[0] == 0.0 and d[-1] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(d, d[1:]))  # increasing
    assert d[3] == pytest.approx(math.exp(3 * math.log(2) / 7) - 1)
    assert depth_scale(0, 1) == 0.0


def test_time_scale_endpoints():
    assert time_scale(0, 100, "constant") == 1.0 and time_scale(99, 100, "constant") == 1.0
    assert time_scale(0, 100, "exp") == 0.0
    assert time_scale(99, 100, "exp") == pytest.approx(1.0)
    assert time_scale(50, 101, "exp") == pytest.approx(math.sqrt(2) - 1)


def test_rates_per_layer_and_step():
    r = dropout_rates(4, 0.2)
    assert r[0] == 0.0 and r[-1] == pytest.approx(0.2)
    assert dropout_rates(4, 0.2, step=0, total_steps=10, schedule="exp") == [0.0] * 4
    assert dropout_rates(4, 0.2, step=9, total_steps=10, schedule="exp")[-1] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        dropout_rates(4, 1.5)


def test_masks_deterministic_and_per_layer_reproducible():
    a = LayerDropout(6, 0.5, seed=3)
    b = LayerDropout(6, 0.5, seed=3)
    ma, mb = a.masks(7, 32), b.masks(7, 32)
    assert all(torch.equal(x, y) for x, y in zip(ma, mb))
    # one layer's draw does not depend on whether the others were drawn
    assert torch.equal(a.layer_mask(4, 7, 32), ma[4])
    assert not torch.equal(a.masks(8, 32)[5], ma[5])  # a new draw per step
    assert not torch.equal(LayerDropout(6, 0.5, seed=4).masks(7, 32)[5], ma[5])  # and per seed
    assert ma[0].all()  # D(0) = 0: layer 0 never drops
    assert LayerDropout(6, 0.0).masks(0, 8) is None


def test_per_sample_drop_statistics():
    L, p_max, B, steps = 4, 0.6, 256, 40
    ld = LayerDropout(L, p_max, seed=0)
    drops = torch.zeros(L)
    for s in range(steps):
        for l, m in enumerate(ld.masks(s, B)):
            drops[l] += (~m).sum()
    rate = drops / (B * steps)
    for l in range(L):
        expected = p_max * depth_scale(l, L)
        assert abs(rate[l].item() - expected) < 0.02, (l, rate[l].item(), expected)
    # per-sample: a mask is a mixture, not all-or-nothing for the batch
    m = ld.masks(0, B)[-1]
    assert 0 < int(m.sum()) < B
