"""suite.cpu_linear: oneDNN linears equal F.linear to float rounding, forward and backward, and never use stale
packed weights."""
from __future__ import annotations

import gc

import pytest
import torch
import torch.nn.functional as F

from suite import cpu_linear

pytestmark = pytest.mark.skipif(not cpu_linear.available(), reason="this PyTorch build has no oneDNN (non-x86 CPU)")


@pytest.mark.parametrize("shape", [(1, 1, 32), (1, 3, 32), (2, 13, 32), (40, 32)])
def test_inference_matches_f_linear(shape):
    w = torch.randn(48, 32)
    x = torch.randn(*shape)
    with torch.inference_mode():
        got = cpu_linear.linear(x, w)
    assert got.shape == (*shape[:-1], 48)
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_a_weight_changed_in_place_is_repacked():
    """An optimiser step between two decoding passes (train, evaluate, train on) must not leave the old packing."""
    w = torch.nn.Parameter(torch.randn(16, 8))
    x = torch.randn(2, 8)
    with torch.no_grad():
        before = cpu_linear.linear(x, w)
        w.mul_(2.0)
        after = cpu_linear.linear(x, w)
    torch.testing.assert_close(after, 2.0 * before, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        w.data = torch.randn(16, 8)  # new storage
        torch.testing.assert_close(cpu_linear.linear(x, w), F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_a_freed_weight_leaves_the_cache():
    w = torch.randn(16, 8)
    with torch.no_grad():
        cpu_linear.linear(torch.randn(1, 8), w)
    key = id(w)
    assert key in cpu_linear._PACKED
    del w
    gc.collect()
    assert key not in cpu_linear._PACKED


@pytest.mark.parametrize("needs", [(True, True), (False, True), (True, False)])
def test_gradients_match_f_linear(needs):
    torch.manual_seed(0)
    x0, w0 = torch.randn(3, 5, 32), torch.randn(24, 32)
    dy = torch.randn(3, 5, 24)
    grads = []
    for fn in (cpu_linear.linear, F.linear):
        x, w = x0.clone().requires_grad_(needs[0]), w0.clone().requires_grad_(needs[1])
        fn(x, w).backward(dy)
        grads.append((x.grad, w.grad))
    for ours, ref in zip(*grads):
        if ref is None:
            assert ours is None
        else:
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


def test_other_dtypes_autocast_and_the_switch_fall_back_to_f_linear(monkeypatch):
    x, w = torch.randn(4, 16), torch.randn(8, 16)
    xb, wb = x.bfloat16(), w.bfloat16()
    assert torch.equal(cpu_linear.linear(xb, wb), F.linear(xb, wb))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu_linear.linear(x, w).dtype == torch.bfloat16
    monkeypatch.setattr(cpu_linear, "ENABLED", False)
    assert torch.equal(cpu_linear.linear(x, w), F.linear(x, w))


@pytest.mark.slow
def test_compiled_inference_goes_through_the_packed_weights():
    """torch.compile keeps the oneDNN product as one custom op over the same packed weights (no repacking per call)."""
    w = torch.randn(24, 16)
    fn = torch.compile(lambda x: cpu_linear.linear(x, w) * 2.0, fullgraph=True, dynamic=False)
    x = torch.randn(1, 3, 16)
    with torch.inference_mode():
        got = fn(x)
        pk = cpu_linear.packed(w)
        fn(x)
        assert cpu_linear.packed(w) is pk
    torch.testing.assert_close(got, 2.0 * F.linear(x, w), rtol=1e-5, atol=1e-5)


def test_past_the_memory_budget_weights_are_multiplied_unpacked(monkeypatch):
    """Packing doubles the weights' memory; a model larger than the budget still decodes, without copies."""
    monkeypatch.setattr(cpu_linear, "PACK_BUDGET", 0)
    w, x = torch.randn(16, 8), torch.randn(3, 8)
    with torch.inference_mode():
        got = cpu_linear.linear(x, w)
    assert id(w) not in cpu_linear._PACKED
    torch.testing.assert_close(got, F.linear(x, w), rtol=1e-5, atol=1e-5)
