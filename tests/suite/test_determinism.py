"""Same spec and seed, same predictions and metrics (timings aside): across two runs, and across 1 and 2 torch
threads, for autoregressive, early-exit and self-speculative decoding of a tiny Llama on TOPv2-format data."""
from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from reproductions.layerskip.checkpoint import save_llama  # noqa: E402
from reproductions.layerskip.model import Llama, LlamaConfig  # noqa: E402
from reproductions.layerskip.topv2 import Row, build_tokenizer  # noqa: E402
from suite.records import read_jsonl  # noqa: E402
from suite.runner import execute  # noqa: E402
from suite.spec import RunSpec  # noqa: E402

TIMING = {"wall_s", "ms_per_token"}
N = 8
SYSTEMS = [pytest.param("layerskip-self-spec", {"exit_layer": 2, "num_speculations": 3}, id="self-spec"),
           pytest.param("layerskip-ar", {}, id="ar", marks=pytest.mark.slow),
           pytest.param("layerskip-early-exit", {"exit_layer": 2}, id="early-exit", marks=pytest.mark.slow)]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A TOPv2-format test file and a random 4-layer Llama with a word-level tokenizer built from it."""
    tmp = tmp_path_factory.mktemp("determinism")
    d = tmp / "data" / "topv2" / "TOPv2_Dataset"
    d.mkdir(parents=True)
    rows = [Row(f"weather_test:{i}", "weather", f"is it going to rain tomorrow in city {i}",
                f"[IN:GET_WEATHER [SL:WEATHER_ATTRIBUTE rain ] [SL:LOCATION city {i} ] ]") for i in range(N)]
    (d / "weather_test.tsv").write_text("domain\tutterance\tsemantic_parse\n"
                                        + "".join(f"{r.domain}\t{r.utterance}\t{r.parse}\n" for r in rows))
    ckpt = tmp / "ckpt"
    tok = build_tokenizer(rows, out_dir=ckpt)
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=len(tok), dim=48, n_layers=4, n_heads=4, n_kv_heads=2, intermediate_size=96,
                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, max_seq_len=128))
    with torch.no_grad():  # specials (EOS) never win: full-length outputs, many drafts rejected
        model.output.weight[sorted(tok.all_special_ids)] = 0.0
    save_llama(model, ckpt)
    return tmp / "data", ckpt


def _run(world, system: str, params: dict, root: Path, threads: int):
    data, ckpt = world
    spec = RunSpec.make("topv2", system, "smoke", limit=N, seed=3,
                        task_args={"domains": ["weather"], "check_sha256": False, "max_new_tokens": 24},
                        params={"model": str(ckpt), **params})
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        res = execute(spec, root=root, data_root=data, device="cpu", dtype="float32", quiet=True)
    finally:
        torch.set_num_threads(before)
    assert not res.reused
    records = read_jsonl(res.path / "records.jsonl")
    for r in records:
        r["stats"] = {k: v for k, v in r["stats"].items() if k not in TIMING}
    metrics = {k: v for k, v in res.metrics["metrics"].items() if k not in TIMING}
    return records, metrics


@pytest.mark.parametrize("system, params", SYSTEMS)
def test_same_spec_same_predictions_and_metrics(world, tmp_path, system, params):
    first = _run(world, system, params, tmp_path / "a", threads=1)
    assert first == _run(world, system, params, tmp_path / "b", threads=1)
    texts = {r["outputs"][0] for r in first[0]}
    assert len(texts) > 2 and all(len(t.split()) > 3 for t in texts), "a degenerate model would prove nothing"
    two = _run(world, system, params, tmp_path / "c", threads=2)
    assert [r["outputs"] for r in two[0]] == [r["outputs"] for r in first[0]]
    assert two == first
