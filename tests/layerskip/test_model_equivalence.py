"""Our Llama equals transformers' LlamaForCausalLM (fp32), full forward and incremental KV-cache decoding."""
import pytest
import torch

from reproductions.layerskip.checkpoint import load_llama
from reproductions.layerskip.model import Llama, LlamaConfig

KINDS = ["llama2_untied_mha", "llama3_tied_gqa_rope_scaled", "linear_rope"]


@pytest.fixture(params=KINDS, scope="module")
def pair(request, tmp_path_factory, ls):
    kinds = dict(zip(KINDS, [ls.LLAMA2, ls.LLAMA3, {**ls.LLAMA2, "rope_scaling": {"rope_type": "linear", "factor": 4.0}}]))
    ref = ls.hf_model(kinds[request.param], seed=1)
    d = tmp_path_factory.mktemp(request.param)
    ref.save_pretrained(d)
    return ref, load_llama(d)


@torch.no_grad()
def test_full_forward_equal(pair):
    ref, ours = pair
    ids = torch.randint(0, ref.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(0))
    want = ref(ids).logits
    assert want.abs().max() > 0.1  # non-trivial logits
    torch.testing.assert_close(ours(ids), want, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_incremental_decoding_equal(pair):
    ref, ours = pair
    ids = torch.randint(0, ref.config.vocab_size, (1, 40), generator=torch.Generator().manual_seed(1))
    want = ref(ids).logits
    ours.setup_cache(64)
    got = [ours.head(ours.run_layers(ids[:, :9], 0))]
    for t in range(9, 40):
        got.append(ours.head(ours.run_layers(ids[:, t:t + 1], t)))
    torch.testing.assert_close(torch.cat(got, 1), want, atol=1e-5, rtol=1e-5)
    # a multi-token chunk in the middle (verification-shaped) and a split run over layer ranges
    h = ours.run_layers(ids[:, 20:27], 20, 0, 2)
    torch.testing.assert_close(ours.head(ours.run_layers(h, 20, 2)), want[:, 20:27], atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_rope_scaling_matters(ls):
    """Guard against silently ignoring rope_scaling: the scaled model differs from the unscaled one."""
    a = ls.hf_model(ls.LLAMA3, seed=2)
    b = ls.hf_model({k: v for k, v in ls.LLAMA3.items() if k != "rope_scaling"}, seed=2)
    ids = torch.randint(0, 103, (1, 64), generator=torch.Generator().manual_seed(3))
    assert (a(ids).logits - b(ids).logits).abs().max() > 1e-4


@torch.no_grad()
def test_forward_train_hidden_states_and_layer_skip():
    cfg = LlamaConfig(vocab_size=50, dim=32, n_layers=3, n_heads=4, n_kv_heads=2, intermediate_size=64)
    torch.manual_seed(0)
    m = Llama(cfg).eval()
    ids = torch.randint(0, 50, (4, 10))
    full = m.forward_train(ids)
    assert len(full) == 3
    torch.testing.assert_close(m.head(full[-1]), m(ids))
    keep = [torch.tensor([True, False, True, False]), torch.zeros(4, dtype=torch.bool), torch.ones(4, dtype=torch.bool)]
    hs = m.forward_train(ids, keep)
    torch.testing.assert_close(hs[0][[0, 2]], full[0][[0, 2]])
    torch.testing.assert_close(hs[1], hs[0])  # layer 1 skipped for everyone
    torch.testing.assert_close(hs[0][[1, 3]], m.embed(ids)[[1, 3]])  # layer 0 skipped for rows 1, 3
    # row 0 skips only layer 1: equals running layer 2 directly on its layer-0 output
    cos, sin = m.rope(0, 10, torch.float32, "cpu")
    torch.testing.assert_close(hs[2][:1], m.layers[2](full[0][:1], cos, sin), atol=1e-6, rtol=1e-6)


def test_forward_train_differentiable():
    cfg = LlamaConfig(vocab_size=50, dim=32, n_layers=2, n_heads=4, n_kv_heads=4, intermediate_size=64,
                      tie_word_embeddings=True)
    m = Llama(cfg)
    ids = torch.randint(0, 50, (3, 8))
    hs = m.forward_train(ids, [torch.tensor([True, False, True]), torch.tensor([False, True, True])])
    sum(m.head(h).logsumexp(-1).mean() for h in hs).backward()
    assert m.layers[0].attn.wqkv.weight.grad.abs().sum() > 0
    assert m.output.weight is m.tok_embeddings.weight
