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


def test_predict_batches_like_one_at_a_time(ckpt):
    """A batch through ``predict`` (left-padded, greedy) gives each request what it gets alone, stops included."""
    ar, ee, ss = _systems(ckpt, batch_size=3)
    reqs = [GenerationRequest(prompt="w1 w2 w3", max_new_tokens=9),
            GenerationRequest(prompt="w7", max_new_tokens=4),
            GenerationRequest(prompt="w4 w5 w6 w7 w8 w9", max_new_tokens=9)]
    exs = [Example(f"e{i}", {}) for i in range(3)]
    alone = ar.generate(reqs[2], exs[2]).text
    reqs[2] = GenerationRequest(prompt=reqs[2].prompt, max_new_tokens=9, stop=(" " + alone.split()[3],))
    for s in (ar, ee, ss):
        got = s.predict(reqs, exs)
        want = [s.generate(r, e) for r, e in zip(reqs, exs)]
        assert [g.text for g in got] == [w.text for w in want]
        assert [g.stats["generated_tokens"] for g in got] == [w.stats["generated_tokens"] for w in want]
    got = ar.predict(reqs, exs)
    assert len(got[1].text.split()) == 4 and got[2].text == " ".join(alone.split()[:3])
    assert got[0].stats["batch_size"] == 3
    assert ss.predict(reqs, exs)[0].stats["batch_size"] == 1  # self-speculative decodes one request at a time


def test_compile_param_gives_identical_outputs(ckpt, monkeypatch):
    """``compile=True`` switches to the static-shape step (checked here without the compiler itself; the real
    torch.compile run is in test_decoding_batch's slow test)."""
    from reproductions.layerskip import decoding

    plain = _systems(ckpt)
    monkeypatch.setattr(decoding, "compiled_step", lambda model, mode=None: model.decode_step)
    static = _systems(ckpt, compile="true")
    reqs = [GenerationRequest(prompt="w1 w2 w3", max_new_tokens=10), GenerationRequest(prompt="w9", max_new_tokens=10)]
    exs = [Example("a", {}), Example("b", {})]
    for p, s in zip(plain, static):
        assert s.compile and not p.compile
        assert [g.text for g in s.predict(reqs, exs)] == [g.text for g in p.predict(reqs, exs)]
