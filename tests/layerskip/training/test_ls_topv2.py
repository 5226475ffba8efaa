"""TOPv2 data, tokenizer and the suite task adapter."""
import os
from pathlib import Path

import pytest

from suite.interfaces import Example, Generation, GenerationRequest
from suite.tasks.topv2 import TopV2Task, normalize_parse, prompt_for


def _root():
    v = os.environ.get("REPRO_DATA_DIR")
    if not v:
        pytest.skip("REPRO_DATA_DIR is not set: the TOPv2 tests read the official TSVs from "
                    "$REPRO_DATA_DIR/topv2/TOPv2_Dataset/")
    p = Path(v) / "topv2" / "TOPv2_Dataset" / "weather_train.tsv"
    if not p.is_file():
        pytest.skip(f"{p} is missing (get TOPv2 from https://fb.me/TOPv2Dataset)")
    return Path(v)


def test_em_scoring_whitespace_normalised():
    t = TopV2Task(domains=("weather",))
    ex = Example("weather_test:0", {"domain": "weather", "utterance": "how cold is it?",
                                    "semantic_parse": "[IN:GET_WEATHER how [SL:WEATHER_ATTRIBUTE cold ] is it ? ]"})
    req = t.request(ex)
    assert isinstance(req, GenerationRequest) and req.prompt == prompt_for("how cold is it?") and req.max_new_tokens >= 50
    good = " [IN:GET_WEATHER  how [SL:WEATHER_ATTRIBUTE cold ] is it ?\t] "
    assert t.score(ex, Generation(good)) == {"exact_match": 1.0}
    assert t.score(ex, Generation("[IN:GET_WEATHER how cold is it ? ]")) == {"exact_match": 0.0}
    assert t.score(ex, Generation("")) == {"exact_match": 0.0}
    assert normalize_parse(" a  b ") == "a b"
    assert TopV2Task(domains="weather,alarm").domains == ("weather", "alarm")
    with pytest.raises(ValueError):
        TopV2Task(domains=("nope",))


def test_missing_data_says_where_to_get_it(tmp_path):
    from suite.data import DataMissing
    with pytest.raises(DataMissing, match="fb.me/TOPv2Dataset"):
        list(TopV2Task(domains=("weather",)).examples("test", tmp_path))
    from reproductions.layerskip import topv2
    with pytest.raises(DataMissing, match="REPRO_DATA_DIR"):
        topv2.load_split("test", ("weather",), tmp_path)


def test_task_examples_in_file_order():
    root = _root()
    t = TopV2Task(domains=("weather",))
    exs = []
    for e in t.examples("test", root):
        exs.append(e)
        if len(exs) == 3:
            break
    assert [e.id for e in exs] == ["weather_test:0", "weather_test:1", "weather_test:2"]
    assert exs[0].data["semantic_parse"].startswith("[IN:")
    assert t.data_files("eval", root)[0].name == "weather_eval.tsv"


def test_tokenizer_round_trip_on_real_rows(tmp_path):
    root = _root()
    from reproductions.layerskip import topv2
    rows = topv2.load_split("train", ("weather",), root)
    tok = topv2.build_tokenizer(rows[:5000], out_dir=tmp_path / "tok")
    tok2 = topv2.load_tokenizer(tmp_path / "tok")  # AutoTokenizer
    assert len(tok2) == len(tok) and tok2.eos_token == "<eos>" and tok2.pad_token == "<pad>"
    for r in rows[:500]:
        ids, labels = topv2.encode_example(tok2, r.utterance, r.parse)
        assert len(ids) == len(labels) and ids[0] == tok2.bos_token_id
        target = [x for x in labels if x != -100]
        assert target[-1] == tok2.eos_token_id
        assert ids[len(ids) - len(target) - 1] == tok2.convert_tokens_to_ids("<sep>")
        assert topv2.decode_parse(tok2, target) == normalize_parse(r.parse)
    # the prompt is tokenised like the parse copies the words
    toks = tok2.convert_ids_to_tokens(tok2(prompt_for("What's the weather at 5pm in Phoenix?"))["input_ids"])
    assert toks == ["<bos>", "What", "'s", "the", "weather", "at", "5", "pm", "in", "Phoenix", "?", "<sep>"]
    # unseen words become <unk>; batches are deterministic and padded per batch
    assert tok2.convert_tokens_to_ids("Zzyzxq") == tok2.unk_token_id
    tb = topv2.make_train_batches(tok2, rows[:300], batch_size=16, seed=1, bucket=4)
    b1, b2 = tb.batch(3), tb.batch(3)
    assert (b1["input_ids"] == b2["input_ids"]).all()
    assert b1["input_ids"].shape[0] == 16 and (b1["labels"][b1["input_ids"] == tok2.pad_token_id] == -100).all()
    assert tb.batch(3, rank=1, world=2)["input_ids"].shape[0] == 8


def test_greedy_eval_cached_equals_plain_loop():
    import torch

    from reproductions.layerskip import topv2
    from reproductions.layerskip.model import Llama, LlamaConfig

    rows = [topv2.Row(f"x:{i}", "weather", u, p) for i, (u, p) in enumerate([
        ("how cold is it?", "[IN:GET_WEATHER how [SL:WEATHER_ATTRIBUTE cold ] is it ? ]"),
        ("rain in Paris tomorrow", "[IN:GET_WEATHER [SL:WEATHER_ATTRIBUTE rain ] in [SL:LOCATION Paris ] [SL:DATE_TIME tomorrow ] ]"),  # noqa: E501
        ("is it hot", "[IN:GET_WEATHER is it [SL:WEATHER_ATTRIBUTE hot ] ]")])]
    tok = topv2.build_tokenizer(rows)
    torch.manual_seed(0)
    m = Llama(LlamaConfig(vocab_size=len(tok), dim=32, n_layers=3, n_heads=2, n_kv_heads=2, intermediate_size=64,
                          eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, pad_token_id=tok.pad_token_id))

    class Plain:  # the same model without the KV-cache API: the plain full-recompute loop
        def __init__(self, m):
            self.m, self.head, self.forward_train = m, m.head, m.forward_train

        def __call__(self, x):
            return self.m(x)

        def eval(self):
            pass

    utts = [r.utterance for r in rows]
    for E in (None, 1, 2):
        assert topv2.greedy_parse_batch(m, tok, utts, 12, E) == topv2.greedy_parse_batch(Plain(m), tok, utts, 12, E)
    res = topv2.evaluate(m, tok, rows, max_new_tokens=8, exit_layers=[1])
    assert set(res) >= {"n", "exact_match", "exact_match_E1", "next_token_acc_per_layer"}
    assert len(res["next_token_acc_per_layer"]) == 3
