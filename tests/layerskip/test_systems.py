"""The suite systems end to end on a tiny checkpoint with a word-level tokenizer."""
import pytest
import torch

from reproductions.layerskip.checkpoint import save_llama
from reproductions.layerskip.model import Llama, LlamaConfig
from suite.interfaces import Example, GenerationRequest, RunContext, System

WORDS = ["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(60)] + ["[", "]", "IN:", "SL:"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import WhitespaceSplit
    from transformers import PreTrainedTokenizerFast

    d = tmp_path_factory.mktemp("tiny_topv2")
    tk = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tk.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<pad>", add_bos_token=True).save_pretrained(d)
    cfg = LlamaConfig(vocab_size=len(WORDS), dim=32, n_layers=4, n_heads=4, n_kv_heads=2, intermediate_size=64,
                      bos_token_id=1, eos_token_id=2, pad_token_id=0, max_seq_len=128)
    torch.manual_seed(0)
    m = Llama(cfg)
    with torch.no_grad():
        for layer in m.layers[1:]:
            layer.attn.wo.weight.mul_(0.01)
            layer.mlp.w2.weight.mul_(0.01)
        m.tok_embeddings.weight.mul_(30)
        m.output.weight[:4] = 0.0  # special tokens (logit 0) lose to the peaked word logits: no EOS, no skipped ids
    save_llama(m, d)
    return d


def _systems(ckpt, **extra):
    from reproductions.layerskip.systems import LayerSkipAR, LayerSkipEarlyExit, LayerSkipSelfSpec

    ctx = RunContext(profile="test", data_root=None, artifacts={"tiny": ckpt})
    p = dict(model="tiny", exit_layer=2, num_speculations=3, **extra)
    return LayerSkipAR(p, ctx), LayerSkipEarlyExit(p, ctx), LayerSkipSelfSpec(p, ctx)


def test_generate_and_stop_strings(ckpt):
    ar, ee, ss = _systems(ckpt)
    ex = Example(id="x0", data={})
    assert all(isinstance(s, System) for s in (ar, ee, ss))
    req = GenerationRequest(prompt="w1 w2 w3", max_new_tokens=12)
    g_ar, g_ss, g_ee = ar.generate(req, ex), ss.generate(req, ex), ee.generate(req, ex)
    assert g_ar.text == g_ss.text and len(g_ar.text.split()) == 12
    assert g_ar.stats["prompt_tokens"] == 4  # BOS added
    assert g_ss.stats["drafted"] > 0 and 0 <= g_ss.stats["acceptance_rate"] <= 1
    assert g_ee.stats["generated_tokens"] == 12
    full = g_ar.text
    stop = " " + full.split()[4]
    cut = full.find(stop)
    req = GenerationRequest(prompt="w1 w2 w3", max_new_tokens=12, stop=(stop,))
    for s in (ar, ss):
        g = s.generate(req, ex)
        assert g.text == full[:cut], g.text
        assert g.stats["generated_tokens"] == len(full[:cut + len(stop)].split())


def test_identity_and_sampling(ckpt):
    ar, _, ss = _systems(ckpt, sample=True, temperature=1.0, top_p=1.0, seed=3)
    idn = ar.identity()
    assert len(idn["checkpoint_sha256"]) == 64 and idn == {**ss.identity(), "strategy": "autoregressive"}
    req = GenerationRequest(prompt="w5", max_new_tokens=6)
    a, b = ss.generate(req, Example("e1", {})), ss.generate(req, Example("e1", {}))
    assert a.text == b.text  # per-example seeding is reproducible
