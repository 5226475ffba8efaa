"""Decoding strategies: lossless greedy self-speculation, early exit semantics, stats, stop rules,
and distribution preservation of speculative sampling."""
import itertools

import pytest
import torch

from reproductions.layerskip.decoding import Sampling, generate, probs
from reproductions.layerskip.model import Llama, LlamaConfig


def tiny(seed: int, agree: bool, vocab=64, layers=4, kv=2, tied=False, ls=None) -> Llama:
    cfg = LlamaConfig(vocab_size=vocab, dim=32, n_layers=layers, n_heads=4, n_kv_heads=kv, intermediate_size=64,
                      tie_word_embeddings=tied)
    torch.manual_seed(seed)
    m = Llama(cfg).eval()
    if agree:
        ls.make_agreeing(m)
    else:
        with torch.no_grad():  # every layer changes the prediction (low acceptance)
            for layer in m.layers:
                layer.attn.wo.weight.mul_(3)
                layer.mlp.w2.weight.mul_(3)
            m.output.weight.mul_(3)
    return m


CASES = [(0, True, 4, 2, False), (1, True, 3, 4, True), (2, False, 4, 2, False), (3, False, 5, 1, False)]


@pytest.mark.parametrize("seed,agree,layers,kv,tied", CASES)
def test_greedy_self_speculation_is_lossless(ls, seed, agree, layers, kv, tied):
    m = tiny(seed, agree, layers=layers, kv=kv, tied=tied, ls=ls)
    g = torch.Generator().manual_seed(seed)
    rates = []
    for _ in range(2):
        prompt = torch.randint(0, 64, (int(torch.randint(1, 12, (1,), generator=g)),), generator=g).tolist()
        ref, st_ref = generate(m, prompt, 20)
        assert st_ref.generated_tokens == len(ref) == 20 and st_ref.drafted == 0
        for E, d, reuse in itertools.product(range(1, layers), range(1, 7), (True, False)):
            out, st = generate(m, prompt, 20, strategy="self_speculative", exit_layer=E, num_speculations=d,
                               reuse_cache=reuse)
            assert out == ref, (E, d, reuse)
            assert 0 <= st.accepted <= st.drafted and st.generated_tokens == len(out)
            assert st.acceptance_rate == pytest.approx(st.accepted / st.drafted)
            assert st.ms_per_token == pytest.approx(1000 * st.wall_s / st.generated_tokens)
            rates.append(st.acceptance_rate)
    mean = sum(rates) / len(rates)
    assert (mean > 0.9) if agree else (mean < 0.9), mean


def test_early_exit_is_head_of_exit_layer_output(ls):
    m = tiny(5, False, layers=4, ls=ls)
    prompt = [3, 14, 15, 9, 2]
    for E in range(1, 5):
        out, st = generate(m, prompt, 10, strategy="early_exit", exit_layer=E)
        seq = list(prompt)
        with torch.no_grad():
            for tok in out:  # recompute greedily without any cache
                h = m.forward_train(torch.tensor([seq]))[E - 1]
                assert tok == int(m.head(h[0, -1]).argmax())
                seq.append(tok)
        assert st.generated_tokens == 10 and st.drafted == 0
    assert generate(m, prompt, 10, strategy="early_exit", exit_layer=4)[0] == generate(m, prompt, 10)[0]


def test_stop_rules(ls):
    m = tiny(0, True, ls=ls)
    prompt = [5, 6, 7]
    ref, _ = generate(m, prompt, 20)
    eos = ref[7]
    cut = ref.index(eos) + 1
    for kw in ({}, dict(strategy="self_speculative", exit_layer=2, num_speculations=5)):
        out, st = generate(m, prompt, 20, eos_token_ids=[eos], **kw)
        assert out == ref[:cut] and st.generated_tokens == cut
        out, _ = generate(m, prompt, 20, stop_fn=lambda toks: len(toks) >= 4 and toks[-1] == ref[5], **kw)
        assert out == ref[:ref.index(ref[5], 3) + 1]
        assert generate(m, prompt, 3, **kw)[0] == ref[:3]
        assert generate(m, prompt, 0, **kw)[0] == []


def test_probs_filters():
    logits = torch.tensor([3.0, 2.0, 1.0, 0.0])
    assert (probs(logits, Sampling(True, top_k=2))[2:] == 0).all()
    p = probs(logits, Sampling(True, top_p=0.7))
    assert p[0] > 0 and p[1] > 0 and p[2] == 0 and p[3] == 0  # softmax mass of token 0 is 0.64 < 0.7
    torch.testing.assert_close(probs(logits, Sampling(True, temperature=2.0)), (logits / 2).softmax(-1))


def _exact_joint(m: Llama, prompt, s: Sampling, n: int) -> dict:
    """Exact distribution of the first n generated tokens under the full model (enumerated)."""
    V = m.config.vocab_size
    out = {}
    with torch.no_grad():
        for seq in itertools.product(range(V), repeat=n):
            p, ids = 1.0, list(prompt)
            for t in seq:
                p *= float(probs(m(torch.tensor([ids]))[0, -1], s)[t])
                ids.append(t)
            out[seq] = p
    return out


def _chi2(counts: dict, exact: dict, N: int) -> float:
    # pool cells with small expectation into one
    chi, pool_o, pool_e = 0.0, 0, 0.0
    for cell, p in exact.items():
        e, o = p * N, counts.get(cell, 0)
        if e < 5:
            pool_o, pool_e = pool_o + o, pool_e + e
        else:
            chi += (o - e) ** 2 / e
    if pool_e > 0:
        chi += (pool_o - pool_e) ** 2 / pool_e
    return chi


def test_speculative_sampling_preserves_distribution(ls):
    """All three tokens are drafted and verified (the first from the prompt's exit). The empirical joint
    distribution of tokens 1-3 over many seeds matches the full model's exact one (chi-square, 26 dof)."""
    torch.manual_seed(12)
    cfg = LlamaConfig(vocab_size=3, dim=16, n_layers=3, n_heads=2, n_kv_heads=1, intermediate_size=32)
    m = Llama(cfg).eval()
    with torch.no_grad():
        for layer in m.layers:
            layer.attn.wo.weight.mul_(5)
            layer.mlp.w2.weight.mul_(5)
        m.output.weight.mul_(20)
    s = Sampling(True, temperature=1.0)
    prompt, n, N = [0, 1], 3, 1500
    exact = _exact_joint(m, prompt, s, n)
    draft_exact = {}
    with torch.no_grad():  # the draft (exit at layer 1) distribution must be clearly different
        for seq in exact:
            p, ids = 1.0, list(prompt)
            for i, t in enumerate(seq):
                h = m.forward_train(torch.tensor([ids]))[0 if i else -1]
                p *= float(probs(m.head(h)[0, -1], s)[t])
                ids.append(t)
            draft_exact[seq] = p
    assert sum(abs(exact[k] - draft_exact[k]) for k in exact) > 0.3
    counts, rates = {}, []
    for seed in range(N):
        out, st = generate(m, prompt, n, strategy="self_speculative", exit_layer=1, num_speculations=2,
                           sampling=s, generator=torch.Generator().manual_seed(seed))
        counts[tuple(out)] = counts.get(tuple(out), 0) + 1
        rates.append(st.acceptance_rate)
    assert 0.05 < sum(rates) / N < 0.95  # both acceptances and rejections were exercised
    assert _chi2(counts, exact, N) < 60.0  # 26 dof: p ~ 2e-4
    assert _chi2(counts, draft_exact, N) > 60.0


def test_draft_confidence_shortens_drafts_losslessly(ls):
    """Ending a draft run at an unsure token changes the cost (fewer drafts per verification), never the output;
    tiny budgets (1, 2 tokens) go through the prompt-verification path and its fallback."""
    m = tiny(2, True, layers=4, ls=ls)
    with torch.no_grad():
        m.output.weight.mul_(40)  # peaked exits: most drafts confident, some not
    prompt = [7, 1, 30, 12]
    ref, _ = generate(m, prompt, 24)
    runs = {}
    for conf in (0.0, 0.5, 0.9):
        out, st = generate(m, prompt, 24, strategy="self_speculative", exit_layer=2, num_speculations=6,
                           draft_confidence=conf)
        assert out == ref, conf
        runs[conf] = st
    assert runs[0.9].drafted <= runs[0.5].drafted < runs[0.0].drafted
    assert runs[0.5].drafted / runs[0.5].verify_steps < runs[0.0].drafted / runs[0.0].verify_steps
    wrong = tiny(3, False, layers=4, ls=ls)  # many rejections
    want = generate(wrong, prompt, 24)[0]
    for conf in (0.05, 0.5):
        assert generate(wrong, prompt, 24, strategy="self_speculative", exit_layer=1, num_speculations=5,
                        draft_confidence=conf)[0] == want
    for n in (1, 2):
        assert generate(m, prompt, n, strategy="self_speculative", exit_layer=1, num_speculations=4)[0] == ref[:n]


def test_layer_counts_per_token(ls):
    """AR runs every layer once per token after the first (which the prefill gives); early exit E layers; an
    agreeing model's self-speculation runs far fewer sequential layer passes than AR (the source of its speed)
    but at least as many layer x positions, and without KVQ re-use more positions than with it."""
    m = tiny(0, True, layers=4, ls=ls)
    prompt, n = [5, 9, 2], 16
    _, ar = generate(m, prompt, n)
    assert ar.layers_per_token == ar.sequential_layers_per_token == pytest.approx(4 * (n - 1) / n)
    _, ee = generate(m, prompt, n, strategy="early_exit", exit_layer=2)
    assert ee.layers_per_token == ee.sequential_layers_per_token == pytest.approx(2 * (n - 1) / n)
    _, ss = generate(m, prompt, n, strategy="self_speculative", exit_layer=1, num_speculations=6)
    _, no_reuse = generate(m, prompt, n, strategy="self_speculative", exit_layer=1, num_speculations=6,
                           reuse_cache=False)
    assert ss.acceptance_rate > 0.9
    assert ss.sequential_layers_per_token < ar.sequential_layers_per_token - 1
    assert ss.layers_per_token >= ar.layers_per_token - 0.5  # the bonus token is all it saves in positions
    assert no_reuse.layers_per_token > ss.layers_per_token
