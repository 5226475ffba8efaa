
import pytest
import torch
import torch.nn.functional as F

from reproductions.layerskip.training.early_exit_loss import (
    early_exit_loss,
    layer_loss_weights,
    loss_scales,
    per_layer_accuracy,
)


def test_paper_scales_small_L():
    assert loss_scales(4, 1.0) == [0.0, 1.0, 3.0, 6.0]
    # e(L-1) = (L-1) + s·Σ_{i=0}^{L-2} i
    assert loss_scales(4, 0.5) == [0.0, 0.5, 1.5, 3.0 + 0.5 * 3.0]
    assert loss_scales(5, 0.2) == pytest.approx([0.0, 0.2, 0.6, 1.2, 4 + 0.2 * 6])
    w = layer_loss_weights(4, None, 1.0)
    assert w == pytest.approx([0.0, 0.1, 0.3, 0.6]) and sum(w) == pytest.approx(1.0)


@pytest.mark.parametrize("kind", ["sum_l", "uniform", "linear_l", "sum_l_tt", "sqrt_l", "inv_l"])
def test_weights_sum_to_one_and_respect_curriculum(kind):
    mask = [False, True, False, True, False, True]
    w = layer_loss_weights(6, mask, 0.5, kind)
    assert sum(w) == pytest.approx(1.0)
    assert all(x == 0.0 for x, on in zip(w, mask) if not on)
    assert layer_loss_weights(6, [False] * 5 + [True], 1.0, kind) == [0.0] * 5 + [1.0]


def test_torchtune_style_variants():
    assert loss_scales(3, 0.5, "uniform") == [0.5, 0.5, 1.0]
    assert loss_scales(3, 1.0, "linear_l") == [1.0, 2.0, 3.0]
    assert loss_scales(3, 1.0, "sum_l_tt") == [1.0, 3.0, 6.0]
    assert loss_scales(1, 1.0) == [0.0] and layer_loss_weights(1) == [1.0]


class Tiny(torch.nn.Module):
    """A stand-in with the training interface: embed, per-layer hidden states, shared head."""

    def __init__(self, V=11, D=8, L=3):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.emb = torch.nn.Parameter(torch.randn(V, D, generator=g))
        self.layers = torch.nn.ModuleList(torch.nn.Linear(D, D) for _ in range(L))
        self.norm = torch.nn.LayerNorm(D)
        self.out = torch.nn.Linear(D, V, bias=False)

    def head(self, h):
        return self.out(self.norm(h))

    def forward_train(self, ids, keep_masks=None):
        h, outs = self.emb[ids], []
        for i, layer in enumerate(self.layers):
            new = h + torch.tanh(layer(h))
            if keep_masks is not None:
                new = torch.where(keep_masks[i][:, None, None], new, h)
            h = new
            outs.append(h)
        return outs


def test_loss_equals_hand_computation():
    torch.manual_seed(0)
    m = Tiny()
    ids = torch.randint(0, 11, (3, 7))
    labels = ids.clone()
    labels[:, :3] = -100  # prompt
    labels[2, 5:] = -100  # padding
    hs = m.forward_train(ids)
    w = [0.2, 0.0, 0.8]
    loss, per = early_exit_loss(hs, m.head, labels, w)
    expect = 0.0
    for l, wl in enumerate(w):
        logits = m.head(hs[l])[:, :-1].reshape(-1, 11)
        ce = F.cross_entropy(logits, labels[:, 1:].reshape(-1), ignore_index=-100)
        if wl:
            assert per[l].item() == pytest.approx(ce.item(), rel=1e-5)
        expect = expect + wl * ce
    assert 1 not in per  # the head is not run for a zero-weight layer
    assert loss.item() == pytest.approx(expect.item(), rel=1e-5)
    loss.backward()
    assert m.layers[0].weight.grad is not None


def test_loss_handles_no_targets_and_accuracy():
    m = Tiny()
    ids = torch.randint(0, 11, (2, 5))
    hs = m.forward_train(ids)
    loss, _ = early_exit_loss(hs, m.head, torch.full((2, 5), -100), [0, 0, 1.0])
    assert loss.item() == 0.0
    labels = ids.clone()
    correct, n = per_layer_accuracy(hs, m.head, labels)
    assert n == 8 and len(correct) == 3 and all(0 <= c <= n for c in correct)
