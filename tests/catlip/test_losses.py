import math

import torch

from reproductions.catlip.losses import bce_multilabel, clip_loss


def test_bce_batch_mean_by_hand():
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 1.0, -2.0]])
    y = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    total = 0.0
    for i in range(2):
        for j in range(3):
            p = 1 / (1 + math.exp(-logits[i, j].item()))
            total += -(y[i, j].item() * math.log(p) + (1 - y[i, j].item()) * math.log(1 - p))
    assert bce_multilabel(logits, y).item() == torch.tensor(total / 2).item() or \
        abs(bce_multilabel(logits, y).item() - total / 2) < 1e-5
    assert abs(bce_multilabel(logits, y, "mean").item() - total / 6) < 1e-6
    assert abs(bce_multilabel(logits, y, "sum").item() - total) < 1e-5


def test_clip_loss_by_hand_and_symmetric():
    torch.manual_seed(0)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    s = torch.tensor(math.log(1 / 0.07))
    an = [x / x.norm() for x in a]
    bn = [x / x.norm() for x in b]
    scale = math.exp(s.item())
    L = [[scale * float(an[i] @ bn[j]) for j in range(4)] for i in range(4)]

    def ce(rows):
        return sum(-rows[i][i] + math.log(sum(math.exp(v) for v in rows[i])) for i in range(4)) / 4
    hand = 0.5 * (ce(L) + ce([list(r) for r in zip(*L)]))
    assert abs(clip_loss(a, b, s).item() - hand) < 1e-4
    assert abs(clip_loss(a, b, s).item() - clip_loss(b, a, s).item()) < 1e-5


def test_clip_temperature_clamped_at_100():
    a = torch.randn(3, 4)
    big = clip_loss(a, a, torch.tensor(10.0))
    at100 = clip_loss(a, a, torch.tensor(math.log(100.0)))
    assert abs(big.item() - at100.item()) < 1e-6
