"""Batched decoding (ragged prompts, left/right padding, per-row stops) and the static-shape decode step.

The static path is checked eagerly here (``compiled_step`` patched to the uncompiled ``decode_step``: same
shapes, same masks, the same verification); ``-m slow`` runs it through the real ``torch.compile``."""
import itertools

import pytest
import torch

from reproductions.layerskip import decoding
from reproductions.layerskip.decoding import generate, generate_batch, ragged_from_padded
from reproductions.layerskip.model import Llama, LlamaConfig


def tiny(seed=0, layers=4, kv=2, vocab=64, scale=3.0) -> Llama:
    cfg = LlamaConfig(vocab_size=vocab, dim=32, n_layers=layers, n_heads=4, n_kv_heads=kv, intermediate_size=64)
    torch.manual_seed(seed)
    m = Llama(cfg).eval()
    with torch.no_grad():  # every layer changes the prediction: low acceptance, many rejected draft slots
        for layer in m.layers:
            layer.attn.wo.weight.mul_(scale)
            layer.mlp.w2.weight.mul_(scale)
    return m


def prompts(seed=1, n=4, vocab=64):
    g = torch.Generator().manual_seed(seed)
    lens = [1, 7, 3, 12, 5, 9][:n]
    return [torch.randint(0, vocab, (k,), generator=g).tolist() for k in lens]


@pytest.mark.parametrize("exit_layer", [None, 2])
def test_batched_greedy_equals_batch_one(exit_layer):
    m = tiny()
    ps = prompts()
    kw = {} if exit_layer is None else dict(strategy="early_exit", exit_layer=exit_layer)
    want = [generate(m, p, 15, **kw)[0] for p in ps]
    got, stats = generate_batch(m, ps, 15, exit_layer=exit_layer)
    assert got == want
    assert [s.generated_tokens for s in stats] == [15] * 4 and all(s.batch_size == 4 for s in stats)
    assert stats[0].ms_per_token == pytest.approx(1000 * stats[0].wall_s / 60)
    # and a cache reused from that batch (stale rows and columns) does not leak into a batch-1 run
    assert generate(m, ps[1], 15, **kw)[0] == want[1]


def test_left_and_right_padding_give_the_same_rows():
    m = tiny(seed=3)
    ps = prompts(seed=4)
    T = max(map(len, ps))
    for side in ("left", "right"):
        ids = torch.full((len(ps), T), 63)
        mask = torch.zeros(len(ps), T, dtype=torch.long)
        for b, p in enumerate(ps):
            sl = slice(T - len(p), T) if side == "left" else slice(0, len(p))
            ids[b, sl], mask[b, sl] = torch.tensor(p), 1
        assert ragged_from_padded(ids, mask) == ps
        assert generate_batch(m, ragged_from_padded(ids, mask), 8)[0] == [generate(m, p, 8)[0] for p in ps]
    with pytest.raises(ValueError, match="attention_mask"):
        ragged_from_padded(ids, mask[:, 1:])


def test_per_row_eos_stop_and_budget():
    m = tiny(seed=5)
    ps = prompts(seed=6, n=3)
    ref = [generate(m, p, 12)[0] for p in ps]
    eos = ref[0][4]
    stop_at = ref[2][2]
    stop_fns = [None, None, lambda toks: toks[-1] == stop_at]
    got, stats = generate_batch(m, ps, [12, 5, 12], eos_token_ids=[eos], stop_fns=stop_fns)

    def cut(seq, n):
        seq = seq[:n]
        return seq[: seq.index(eos) + 1] if eos in seq else seq
    assert got[0] == cut(ref[0], 12) and len(got[0]) <= 5
    assert got[1] == cut(ref[1], 5)
    want2 = cut(ref[2], 12)
    assert got[2] == want2[: want2.index(stop_at) + 1]
    assert [s.generated_tokens for s in stats] == [len(g) for g in got]
    assert generate_batch(m, ps, 0)[0] == [[], [], []]
    with pytest.raises(ValueError, match="empty prompt"):
        generate_batch(m, [[1], []], 4)


def _poison_cache(m: Llama) -> None:
    """Large finite values in every cache slot: anything the mask fails to hide changes the outputs."""
    g = torch.Generator().manual_seed(9)
    for layer in m.layers:
        for buf in (layer.attn.k_cache, layer.attn.v_cache):
            buf.copy_(torch.randn(buf.shape, generator=g) * 1e3)


@pytest.fixture
def static_eager(monkeypatch):
    """compile=True without the compiler: the static-shape step (full-cache attention under a position mask,
    one graph per verification width) run eagerly."""
    monkeypatch.setattr(decoding, "compiled_step", lambda model, mode=None: model.decode_step)


def test_static_step_equals_eager(static_eager):
    m = tiny(seed=7, layers=4)
    p = prompts(seed=8)[3]
    ref = generate(m, p, 24)[0]
    m.setup_cache(256)
    _poison_cache(m)
    assert generate(m, p, 24, compile=True)[0] == ref
    assert generate(m, p, 10, strategy="early_exit", exit_layer=2, compile=True)[0] == \
        generate(m, p, 10, strategy="early_exit", exit_layer=2)[0]
    rejected = 0
    for E, d, reuse in itertools.product((1, 3), (1, 4), (True, False)):
        out, st = generate(m, p, 24, strategy="self_speculative", exit_layer=E, num_speculations=d,
                           reuse_cache=reuse, compile=True)
        assert out == ref, (E, d, reuse)
        rejected += st.drafted - st.accepted
    assert rejected > 10  # rejected draft slots were written and had to be hidden by the mask


def test_static_batched_equals_eager(static_eager):
    m = tiny(seed=10)
    ps = prompts(seed=11)
    m.setup_cache(256, 4)
    _poison_cache(m)
    assert generate_batch(m, ps, 10, compile=True)[0] == [generate(m, p, 10)[0] for p in ps]


@pytest.mark.slow
def test_torch_compile_equals_eager():
    m = tiny(seed=12, layers=3)
    p = prompts(seed=13)[1]
    ref = generate(m, p, 16)[0]
    assert generate(m, p, 16, compile=True)[0] == ref
    assert generate(m, p, 16, strategy="self_speculative", exit_layer=1, num_speculations=3, compile=True)[0] == ref
    ps = prompts(seed=14, n=2)
    assert generate_batch(m, ps, 8, compile=True)[0] == [generate(m, q, 8)[0] for q in ps]


def test_onednn_and_mkl_linears_decode_the_same_tokens(monkeypatch):
    """CPU decoding multiplies through oneDNN (suite.cpu_linear); with it switched off (F.linear) every strategy
    yields the same tokens: the kernels differ only in float rounding."""
    from suite import cpu_linear

    m = tiny(seed=15)
    ps = prompts(seed=16, n=2)

    def decode():
        return ([generate(m, p, 12)[0] for p in ps]
                + [generate(m, ps[0], 12, strategy="self_speculative", exit_layer=2, num_speculations=3)[0]]
                + generate_batch(m, ps, 8)[0])

    on = decode()
    monkeypatch.setattr(cpu_linear, "ENABLED", False)
    assert decode() == on
