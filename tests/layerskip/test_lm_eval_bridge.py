"""The lm-eval model ``repro-layerskip`` on a tiny random Llama, offline: scores match transformers at every exit
layer, generation is our decoding, self-speculative generation is lossless."""
from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("lm_eval")

L = 4
GEN = {"until": [], "max_gen_toks": 6}


def _byte_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {"<s>": 0, "</s>": 1, **{c: i + 2 for i, c in enumerate(alphabet)}}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, ls):
    d = tmp_path_factory.mktemp("tiny-llama")
    hf = ls.hf_model(ls.LLAMA2, seed=3, vocab_size=260, bos_token_id=0, eos_token_id=1, num_hidden_layers=L)
    hf.save_pretrained(d)
    _byte_tokenizer().save_pretrained(d)
    return d, hf


def _lm(path, **args):
    from reproductions.layerskip.lm_eval_bridge import register

    cls = register()
    return cls(model=str(path), dtype="float32", device="cpu", warmup=False, **args)


def _inst(kind, args, i=0):
    from lm_eval.api.instance import Instance

    return Instance(kind, {}, args, i)


def _hf_logprobs(hf, ids: list[int], exit_layer: int) -> torch.Tensor:
    """log-softmax [T, V] of the HF model at an exit layer (final norm + head on that layer's output)."""
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_hidden_states=True)
        logits = out.logits[0] if exit_layer == L else hf.lm_head(hf.model.norm(out.hidden_states[exit_layer]))[0]
    return logits.float().log_softmax(-1)


PAIRS = [("Hello", " world"), ("The quick brown fox", " jumps over"), ("", "abc"), ("x ", "yz")]


def test_registered_under_its_name():
    from lm_eval.api.registry import get_model, model_registry

    from reproductions.layerskip.lm_eval_bridge import MODEL_NAME, register

    cls = register()
    assert MODEL_NAME == "repro-layerskip" and get_model("repro-layerskip") is cls
    assert "hf" in model_registry.keys()  # lm-eval's own models are still registered


@pytest.mark.parametrize("exit_layer", [1, 2, L])
def test_loglikelihood_matches_transformers(ckpt, exit_layer):
    path, hf = ckpt
    lm = _lm(path, exit_layer=exit_layer, batch_size=3)
    assert lm.strategy == ("autoregressive" if exit_layer == L else "early_exit") and lm.score_layer == exit_layer
    got = lm.loglikelihood([_inst("loglikelihood", p, i) for i, p in enumerate(PAIRS)])
    one = _lm(path, exit_layer=exit_layer, batch_size=1).loglikelihood(
        [_inst("loglikelihood", p, i) for i, p in enumerate(PAIRS)])
    for (ctx, cont), (ll, greedy), (ll1, _) in zip(PAIRS, got, one):
        if ctx:
            ctx_s, cont_s = ctx.rstrip(), ctx[len(ctx.rstrip()):] + cont  # lm-eval moves trailing spaces
            whole, ctx_ids = lm.tok_encode(ctx_s + cont_s), lm.tok_encode(ctx_s)
        else:
            ctx_ids, whole = [0], [0] + lm.tok_encode(cont, add_special_tokens=False)
        cont_ids = whole[len(ctx_ids):]
        lp = _hf_logprobs(hf, whole[:-1], exit_layer)
        want = sum(float(lp[len(ctx_ids) - 1 + j, t]) for j, t in enumerate(cont_ids))
        assert ll == pytest.approx(want, abs=1e-4)
        assert ll1 == pytest.approx(ll, abs=1e-4)  # right padding in a batch changes nothing
        assert isinstance(greedy, bool)


def test_is_greedy_flags_the_argmax_continuation(ckpt):
    from reproductions.layerskip.decoding import generate

    path, _ = ckpt
    lm = _lm(path, exit_layer=2)
    ctx = lm.tok_encode("Hello")
    toks, _ = generate(lm.model, ctx, 5, strategy="early_exit", exit_layer=2)
    (ll, greedy), (_, not_greedy) = lm._loglikelihood_tokens(
        [(None, ctx, toks), (None, ctx, toks[:-1] + [(toks[-1] + 1) % 260 or 2])])
    assert greedy and not not_greedy and ll < 0


def test_generate_until_is_our_early_exit_decoding(ckpt):
    from reproductions.layerskip.lm_eval_bridge import exit_logits

    path, _ = ckpt
    lm = _lm(path, exit_layer=2)
    [text] = lm.generate_until([_inst("generate_until", ("Hello", dict(GEN)))])
    ids = lm.tok_encode("Hello")
    with torch.no_grad():  # reference: recompute the whole sequence every step, no KV cache
        for _ in range(GEN["max_gen_toks"]):
            nxt = int(exit_logits(lm.model, torch.tensor([ids]), 2)[0, -1].argmax())
            ids.append(nxt)
            if nxt == 1:
                break
    assert text == lm.tok_decode(ids[len(lm.tok_encode("Hello")):])
    stats = lm.get_model_info()
    assert stats["layerskip_strategy"] == "early_exit" and stats["layerskip_gen_generated_tokens_mean"] >= 1


def test_generate_until_stops_at_until(ckpt):
    path, _ = ckpt
    lm = _lm(path)
    [full] = lm.generate_until([_inst("generate_until", ("Once upon a time", {"until": [], "max_gen_toks": 12}))])
    stop = next((c for c in full[1:] if c != "\ufffd"), None)
    if stop is None:
        pytest.skip("the random model produced no usable stop character")
    [cut] = lm.generate_until([_inst("generate_until", ("Once upon a time", {"until": [stop], "max_gen_toks": 12}))])
    assert cut == full[: full.index(stop)] and stop not in cut


def test_self_speculative_is_lossless(ckpt):
    path, _ = ckpt
    ar = _lm(path)
    ss = _lm(path, exit_layer=1, num_speculations=3)
    assert ss.strategy == "self_speculative" and ss.score_layer == L
    prompts = [("Hello", dict(GEN)), ("The quick brown fox", dict(GEN, max_gen_toks=10))]
    reqs = [_inst("generate_until", p, i) for i, p in enumerate(prompts)]
    assert ss.generate_until(reqs) == ar.generate_until(reqs)
    lls = [_inst("loglikelihood", p, i) for i, p in enumerate(PAIRS)]
    assert [round(x, 4) for x, _ in ss.loglikelihood(lls)] == [round(x, 4) for x, _ in ar.loglikelihood(lls)]
    info = ss.get_model_info()
    assert info["layerskip_num_speculations"] == 3 and 0.0 <= info["layerskip_gen_acceptance_rate_mean"] <= 1.0
    assert info["layerskip_gen_drafted_mean"] > 0


def test_loglikelihood_rolling(ckpt):
    path, hf = ckpt
    lm = _lm(path, exit_layer=3)
    text = "perplexity of a short text"
    [got] = lm.loglikelihood_rolling([_inst("loglikelihood_rolling", (text,))])
    ids = [0] + lm.tok_encode(text, add_special_tokens=False)
    lp = _hf_logprobs(hf, ids[:-1], 3)
    assert got == pytest.approx(sum(float(lp[i, t]) for i, t in enumerate(ids[1:])), abs=1e-3)
    short = _lm(path, exit_layer=3, max_length=8)
    toks = list(range(2, 30))
    windows = list(short._rolling_windows(toks))
    assert [t for _, c in windows for t in c] == toks
    assert all(ctx and len(ctx) + len(c) <= 9 for ctx, c in windows)
    [long] = short.loglikelihood_rolling([_inst("loglikelihood_rolling", ("a much longer text " * 3,))])
    assert math.isfinite(long) and long < 0


def test_bad_arguments(ckpt):
    path, _ = ckpt
    with pytest.raises(ValueError, match="exit_layer"):
        _lm(path, exit_layer=0)
    with pytest.raises(ValueError, match="early_exit"):
        _lm(path, exit_layer=2, strategy="autoregressive")
    with pytest.raises(ValueError, match="num_speculations"):
        _lm(path, exit_layer=2, strategy="self_speculative")


def test_create_from_arg_string(ckpt):
    path, _ = ckpt
    from reproductions.layerskip.lm_eval_bridge import register

    lm = register().create_from_arg_string(f"model={path},exit_layer=2,warmup=False",
                                           {"batch_size": "4", "device": "cpu", "max_batch_size": None})
    assert lm.exit_layer == 2 and lm.batch_size == 4 and lm.device == "cpu" and lm.strategy == "early_exit"


def test_results_to_metrics_names():
    from reproductions.layerskip.lm_eval_bridge import results_to_metrics

    res = {"results": {"boolq": {"alias": "boolq", "acc,none": 0.75, "acc_stderr,none": 0.01},
                       "gsm8k": {"exact_match,strict-match": 0.1, "exact_match_stderr,strict-match": "N/A",
                                 "sample_len": 3}},
           "n-samples": {"boolq": {"original": 3270, "effective": 3270}}}
    m = results_to_metrics(res)
    assert set(m) == {"boolq/acc", "gsm8k/exact_match@strict-match"}
    assert m["boolq/acc"]["value"] == 0.75 and m["boolq/acc"]["n"] == 3270
    assert m["boolq/acc"]["ci95"] == pytest.approx([0.75 - 0.0196, 0.75 + 0.0196])
    assert m["gsm8k/exact_match@strict-match"]["ci95"] is None


TINY_TASK = """task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_target: label
doc_to_choice: "{{{{choices}}}}"
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""

TINY_TABLE = """id: tiny-lm-eval
profiles: {smoke: {skip: "paper only"}, mini: {skip: "paper only"}, paper: {}}
columns:
  - {id: acc, label: "tiny acc", metric: "tiny_mc/acc"}
rows:
  - {id: ls_mid, label: "LayerSkip, middle layer", artifact: tiny-ls-l2, paper: {acc: 0.5}}
tolerances:
  acc: {abs: 1.0}
"""


@pytest.mark.slow
def test_record_flows_into_a_table_cell(ckpt, tmp_path, monkeypatch):
    """End to end, offline: lm-eval runs a local multiple-choice task on repro-layerskip at exit layer 2, the scores
    become a suite artifact, and a table row with ``artifact:`` reads them."""
    import json

    import datasets

    from reproductions.layerskip.lm_eval_bridge import record
    from suite.compare import evaluate_table
    from suite.tables import load_table

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")  # keep ~/.cache clean
    path, _ = ckpt
    data = tmp_path / "tiny_mc.jsonl"
    rows = [{"question": "Is the sky blue?", "choices": ["yes", "no"], "label": 0},
            {"question": "Two plus two?", "choices": ["four", "five"], "label": 0},
            {"question": "Fire is?", "choices": ["cold", "hot"], "label": 1}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "tiny_mc.yaml").write_text(TINY_TASK.format(data=data))
    runs = tmp_path / "runs"
    args = f"model={path},exit_layer=2,warmup=False"
    out = record("tiny-ls-l2", model_args=args, tasks=["tiny_mc"], runs_root=runs, include_path=str(tasks))
    rec = json.loads(out.read_text())
    assert out == runs / "paper" / "artifacts" / "tiny-ls-l2" / "metrics.json"
    acc = rec["metrics"]["tiny_mc/acc"]
    assert acc["n"] == 3 and acc["value"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert rec["lm_eval_runs"][0]["config"]["layerskip_exit_layer"] == 2
    # the scores equal what the bridge's loglikelihood gives directly
    lm = _lm(path, exit_layer=2)
    hits = 0
    for r in rows:
        ctx = f"Question: {r['question']}\nAnswer:"
        lls = [ll for ll, _ in lm.loglikelihood([_inst("loglikelihood", (ctx, " " + c)) for c in r["choices"]])]
        hits += int(max(range(len(lls)), key=lls.__getitem__) == r["label"])
    assert acc["value"] == pytest.approx(hits / 3)
    table = tmp_path / "tiny_table.yaml"
    table.write_text(TINY_TABLE)
    res = evaluate_table(load_table(table, "paper"), runs)
    assert res.cells["ls_mid.acc"].ours == pytest.approx(acc["value"])
    with pytest.raises(ValueError, match="model_args"):
        record("tiny-ls-l2", model_args=args.replace("exit_layer=2", "exit_layer=3"), tasks=["tiny_mc"],
               runs_root=runs, include_path=str(tasks))
