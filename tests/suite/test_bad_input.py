"""Bad input through the real CLI: exit 2, one line naming the file and the line or field, nothing complete.

Every case builds its own broken input in a temporary folder (no data set needed) and runs ``repro``
in-process; the message must be a single line, name the file (or the misspelt name), and point at the
line or field, and no ``metrics.json`` / report may appear as if the run had finished.
"""
from __future__ import annotations

import gzip
import json
import os
import uuid
from pathlib import Path

import pytest

from suite.cli import main
from suite.papers import Paper
from suite.records import write_json_atomic
from suite.registry import PAPERS
from suite.runner import run_dir
from suite.spec import RunSpec

TSV_HEADER = "domain\tutterance\tsemantic_parse"


def repro(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(list(argv))
    err = capsys.readouterr().err.strip()
    return rc, err


def assert_bad_input(rc: int, err: str, *must: str) -> None:
    assert rc == 2, err
    assert err.startswith("repro: error: ") and "\n" not in err, err
    for m in must:
        assert m in err, f"{m!r} not in: {err}"


def no_finished_run(runs: Path) -> None:
    assert not list(runs.rglob("metrics.json")), "a failed run must not look finished"


def topv2_root(tmp: Path, rows: list[str]) -> Path:
    d = tmp / "data" / "topv2" / "TOPv2_Dataset"
    d.mkdir(parents=True)
    (d / "weather_test.tsv").write_text("\n".join([TSV_HEADER, *rows]) + "\n")
    return tmp / "data"


def topv2_run(root: Path, runs: Path, *extra: str) -> list[str]:
    return ["run", "--task", "topv2", "--task-arg", "domains=[weather]", "--data-root", str(root),
            "--runs-dir", str(runs), *extra]


GOOD_ROW = "weather\twhat is the weather\t[IN:GET_WEATHER ]"


# ----------------------------------------------------------------------------- data files


def test_truncated_humaneval_gzip(tmp_path, capsys):
    d = tmp_path / "data" / "humaneval"
    d.mkdir(parents=True)
    rows = b"".join(json.dumps({"task_id": f"HumanEval/{i}", "prompt": "def f():\n", "test": "", "entry_point": "f",
                                "canonical_solution": "    return 1\n"}).encode() + b"\n" for i in range(50))
    (d / "HumanEval.jsonl.gz").write_bytes(gzip.compress(rows)[:-40])  # cut off mid-stream
    rc, err = repro(capsys, "run", "--task", "humaneval", "--system", "oracle", "--limit", "2",
                    "--data-root", str(tmp_path / "data"), "--runs-dir", str(tmp_path / "runs"))
    assert_bad_input(rc, err, "HumanEval.jsonl.gz", "sha256")
    no_finished_run(tmp_path / "runs")


def test_run_record_line_not_json(tmp_path, capsys):
    root = topv2_root(tmp_path, [GOOD_ROW] * 4)
    runs = tmp_path / "runs"
    args = topv2_run(root, runs, "--system", "oracle", "--task-arg", "check_sha256=false")
    assert repro(capsys, *args)[0] == 0
    folder = next(runs.glob("smoke/topv2__oracle__*"))
    (folder / "metrics.json").unlink()  # as if killed before the end ...
    lines = (folder / "records.jsonl").read_text().splitlines()
    lines[1] = lines[1][:-5] + "}{oops"  # ... with a record edited into something that is not JSON
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    rc, err = repro(capsys, *args)
    assert_bad_input(rc, err, "records.jsonl:2", "corrupt run record")
    no_finished_run(runs)


def test_summarization_jsonl_line_not_json(tmp_path, capsys, monkeypatch):
    f = tmp_path / "cnndm.jsonl"
    f.write_text(json.dumps({"id": "a", "article": "A b. C d.", "highlights": "A b."}) + "\n"
                 + json.dumps({"id": "b", "article": "E f.", "highlights": "E f."}) + "\n{not json\n")
    monkeypatch.setenv("REPRO_CNNDM_JSONL", str(f))
    rc, err = repro(capsys, "run", "--task", "cnn_dm", "--task-arg", "source=jsonl", "--task-arg", "shots=0",
                    "--system", "lead", "--runs-dir", str(tmp_path / "runs"))
    assert_bad_input(rc, err, f"{f}:3", "not JSON")
    no_finished_run(tmp_path / "runs")


def test_topv2_row_with_wrong_column_count(tmp_path, capsys):
    root = topv2_root(tmp_path, [GOOD_ROW, "weather\tonly two columns"])
    rc, err = repro(capsys, *topv2_run(root, tmp_path / "runs", "--system", "oracle", "--task-arg",
                                       "check_sha256=false"))
    assert_bad_input(rc, err, "weather_test.tsv:3", "2 columns, expected 3")
    no_finished_run(tmp_path / "runs")


def test_topv2_file_differs_from_the_official_one(tmp_path, capsys):
    root = topv2_root(tmp_path, [GOOD_ROW])
    rc, err = repro(capsys, *topv2_run(root, tmp_path / "runs", "--system", "oracle"))
    assert_bad_input(rc, err, "weather_test.tsv", "sha256", "official")
    no_finished_run(tmp_path / "runs")


def _coco(tmp: Path, annotations: list[dict], write_image: bool) -> Path:
    root = tmp / "data" / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "val2017").mkdir()
    if write_image:
        from PIL import Image
        Image.new("RGB", (8, 8)).save(root / "val2017" / "a.jpg")
    cats = [{"id": i, "name": f"c{i}", "supercategory": "x"} for i in range(1, 81)]
    inst = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], "annotations": annotations,
            "categories": cats}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(inst))
    return tmp / "data"


def test_missing_image(tmp_path, capsys):
    root = _coco(tmp_path, [], write_image=False)
    rc, err = repro(capsys, "run", "--task", "coco_multilabel", "--system", "oracle", "--data-root", str(root),
                    "--runs-dir", str(tmp_path / "runs"))
    assert_bad_input(rc, err, "instances_val2017.json", "images[0]", "file_name", "a.jpg")
    no_finished_run(tmp_path / "runs")


def test_coco_annotation_with_dangling_image_id(tmp_path, capsys):
    ann = {"id": 7, "image_id": 99, "category_id": 1, "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0}
    root = _coco(tmp_path, [ann], write_image=True)
    rc, err = repro(capsys, "run", "--task", "coco_detection", "--system", "oracle", "--data-root", str(root),
                    "--runs-dir", str(tmp_path / "runs"))
    assert_bad_input(rc, err, "instances_val2017.json", "annotations[0]", "image_id", "99")
    no_finished_run(tmp_path / "runs")


# ----------------------------------------------------------------------------- checkpoints


def _tiny_llama(d: Path) -> Path:
    pytest.importorskip("transformers")
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      max_position_embeddings=64)
    LlamaForCausalLM(cfg).save_pretrained(d)
    return d


def test_checkpoint_folder_without_weights(tmp_path, capsys):
    ckpt = _tiny_llama(tmp_path / "ckpt")
    for f in ckpt.glob("*.safetensors"):
        f.unlink()
    root = topv2_root(tmp_path, [GOOD_ROW])
    rc, err = repro(capsys, *topv2_run(root, tmp_path / "runs", "--system", "layerskip-ar", "--param",
                                       f"model={ckpt}", "--task-arg", "check_sha256=false"))
    assert_bad_input(rc, err, str(ckpt), "no weights", "model.safetensors")
    no_finished_run(tmp_path / "runs")


def test_safetensors_with_wrong_shapes(tmp_path, capsys):
    ckpt = _tiny_llama(tmp_path / "ckpt")
    cfg = json.loads((ckpt / "config.json").read_text())
    cfg["intermediate_size"] = 48  # the weights say 64
    (ckpt / "config.json").write_text(json.dumps(cfg))
    root = topv2_root(tmp_path, [GOOD_ROW])
    rc, err = repro(capsys, *topv2_run(root, tmp_path / "runs", "--system", "layerskip-ar", "--param",
                                       f"model={ckpt}", "--task-arg", "check_sha256=false"))
    assert_bad_input(rc, err, "model.safetensors", "mlp", "has shape", "config.json implies")
    no_finished_run(tmp_path / "runs")


class _RunsCode:
    """A pickle payload that would create a file when unpickled without weights_only."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_runs_code_is_refused(tmp_path, capsys):
    import torch

    ckpt = _tiny_llama(tmp_path / "ckpt")
    for f in ckpt.glob("*.safetensors"):
        f.unlink()
    marker = tmp_path / "pwned"
    torch.save({"model.embed_tokens.weight": _RunsCode(marker)}, ckpt / "pytorch_model.bin")
    root = topv2_root(tmp_path, [GOOD_ROW])
    rc, err = repro(capsys, *topv2_run(root, tmp_path / "runs", "--system", "layerskip-ar", "--param",
                                       f"model={ckpt}", "--task-arg", "check_sha256=false"))
    assert_bad_input(rc, err, "pytorch_model.bin", "refused")
    assert not marker.exists(), "the pickle ran code"


def test_layerskip_trainer_refuses_a_state_file_that_runs_code(tmp_path):
    import pickle

    import torch

    from reproductions.layerskip.training.recipe import TrainConfig
    from reproductions.layerskip.training.trainer import STATE_FILE, train

    class Data:
        def batch(self, step, rank=0, world=1):
            ids = torch.randint(4, 37, (2, 6), generator=torch.Generator().manual_seed(step))
            return {"input_ids": ids, "labels": ids.clone()}

    class Tok:
        bos_token_id, eos_token_id, pad_token_id = 1, 2, 0

        def __len__(self):
            return 37

    cfg = TrainConfig(dim=16, n_layers=2, n_heads=2, steps=4, warmup_steps=1, batch_size=2, checkpoint_every=2,
                      threads=1)
    train(cfg, Data(), tmp_path / "out", tokenizer=Tok(), stop_after=2, log=lambda m: None)
    marker = tmp_path / "pwned"
    torch.save({"step": 2, "optimizer": _RunsCode(marker)}, tmp_path / "out" / "checkpoint-2" / STATE_FILE)
    with pytest.raises(pickle.UnpicklingError):
        train(cfg, Data(), tmp_path / "out", tokenizer=Tok(), log=lambda m: None)
    assert not marker.exists(), "the pickle ran code"


def test_catlip_trainer_refuses_a_state_file_that_runs_code(tmp_path):
    import pickle

    import torch
    from PIL import Image

    from reproductions.catlip import train as T
    from reproductions.catlip.vocab import Vocab

    with open(tmp_path / "pairs.jsonl", "w") as f:
        for i in range(4):
            Image.new("RGB", (40, 40), (60 * i, 0, 0)).save(tmp_path / f"i{i}.jpg")
            f.write(json.dumps({"image_path": f"i{i}.jpg", "captions": [f"a dog {i}"]}) + "\n")
    vocab = Vocab(offsets=[1, 2], counts=[4, 4], v_tau=1)
    cfg = T.TrainConfig(method="catlip", manifest=str(tmp_path / "pairs.jsonl"), out_dir=str(tmp_path / "out"),
                        resolution=32, batch_size=2, steps=2, warmup_steps=1, checkpoint_every=1, num_threads=1,
                        precision="fp32", max_steps_this_run=1)
    T.train(cfg, vocab=vocab, extractor=lambda cap: [1], quiet=True)
    marker = tmp_path / "pwned"
    torch.save({"step": 1, "optimizer": _RunsCode(marker)}, tmp_path / "out" / "checkpoint" / "state.pt")
    with pytest.raises(pickle.UnpicklingError):
        T.train(cfg, vocab=vocab, extractor=lambda cap: [1], quiet=True)
    assert not marker.exists(), "the pickle ran code"


def test_every_load_of_a_pickle_format_is_weights_only():
    """Static guard: no code path in the suite or the reproductions unpickles untrusted files."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for f in [*root.joinpath("suite").rglob("*.py"), *root.joinpath("reproductions").rglob("*.py")]:
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if ("torch.load(" in code and "weights_only=True" not in code) or "pickle.load" in code:
                offenders.append(f"{f.relative_to(root)}:{i}: {line.strip()}")
    assert not offenders, offenders


# ----------------------------------------------------------------------------- names, specs, results files


@pytest.mark.parametrize("argv, must", [
    (["run", "--task", "humanevl", "--system", "oracle"], ["unknown task 'humanevl'", "did you mean 'humaneval'"]),
    (["run", "--task", "humaneval", "--system", "orcale"], ["unknown system 'orcale'", "did you mean 'oracle'"]),
    (["report", "layerskp"], ["unknown paper 'layerskp'", "did you mean 'layerskip'"]),
])
def test_unknown_names(tmp_path, capsys, argv, must):
    rc, err = repro(capsys, *argv, "--runs-dir", str(tmp_path / "runs"))
    assert_bad_input(rc, err, *must)
    no_finished_run(tmp_path / "runs")


def register_for_test(monkeypatch, registry, name, target) -> None:
    """A registration undone after the test, so other tests see only the built-ins."""
    registry.names()  # the entry points first: only the temporary name changes
    monkeypatch.setitem(registry._targets, name, target)
    monkeypatch.setitem(registry._sources, name, "test")


SPEC = """
id: bad-demo
paper: demo
title: "Demo"
defaults: {task: topv2, task_args: {domains: [weather], check_sha256: false}}
profiles:
  smoke: {limit: 2}
columns:
  - {id: em, label: EM, metric: METRIC}
rows:
  - id: r
    run: {system: oracle}
    PAPERKEY: {em: 0.8}
gate:
  em: {abs: 0.01}
"""


@pytest.fixture
def demo_paper(tmp_path, monkeypatch):
    """A paper registered at runtime whose one table reads one finished run (metrics written by hand)."""
    def make(metric: str = "exact_match", paper_key: str = "paper") -> tuple[str, Path]:
        tables = tmp_path / f"tables-{uuid.uuid4().hex[:6]}"
        tables.mkdir()
        (tables / "bad.yaml").write_text(SPEC.replace("METRIC", metric).replace("PAPERKEY", paper_key))
        name = f"demo{uuid.uuid4().hex[:8]}"
        register_for_test(monkeypatch, PAPERS, name, Paper(name=name, title="Demo", arxiv="0000.00000",
                                                           tables_dir=tables))
        return name, tables / "bad.yaml"
    return make


def _finished_run(runs: Path, metrics: object) -> Path:
    spec = RunSpec.make("topv2", "oracle", "smoke", limit=2, task_args={"domains": ["weather"], "check_sha256": False})
    path = run_dir(spec, runs) / "metrics.json"
    path.parent.mkdir(parents=True)
    if isinstance(metrics, str):
        path.write_text(metrics)
    else:
        write_json_atomic(path, metrics)
    return path


def _report_args(name: str, tmp: Path) -> list[str]:
    return ["report", name, "--runs-dir", str(tmp / "runs"), "--out", str(tmp / "reports")]


def test_table_spec_with_misspelt_key(tmp_path, capsys, demo_paper):
    name, spec_file = demo_paper(paper_key="papr")
    rc, err = repro(capsys, *_report_args(name, tmp_path))
    assert_bad_input(rc, err, str(spec_file), "rows[0]", "'papr'", "did you mean 'paper'")
    assert not (tmp_path / "reports").exists()


def test_cell_naming_a_metric_nobody_produces(tmp_path, capsys, demo_paper):
    name, spec_file = demo_paper(metric="exact_mach")
    _finished_run(tmp_path / "runs", {"metrics": {"exact_match": {"value": 0.5, "ci95": [0.0, 1.0], "n": 2}}})
    rc, err = repro(capsys, *_report_args(name, tmp_path))
    assert_bad_input(rc, err, str(spec_file), "cell r.em", "'exact_mach'", "did you mean 'exact_match'")
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("content, must", [
    ('{"metrics": {"exact_match": {"value": "high"}}}', "'metrics.exact_match.value'"),
    ('{"metrics": [1, 2]}', "field 'metrics'"),
    ('{"metrics": {"exact_match": {"value": 0.5, "ci95": "wide"}}}', "'metrics.exact_match.ci95'"),
    ('{"metrics": {"exact_match": \n{"value": 0.5', "metrics.json:2"),
])
def test_results_file_edited_into_nonsense(tmp_path, capsys, demo_paper, content, must):
    name, _ = demo_paper()
    path = _finished_run(tmp_path / "runs", content)
    rc, err = repro(capsys, *_report_args(name, tmp_path))
    assert_bad_input(rc, err, str(path.parent.name), "metrics.json", must)
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("baseline, must", [
    ({"bad-demo": {"cells": {"r.em": "oops"}, "claims": {}}}, "'bad-demo.cells.r.em'"),
    ({"bad-demo": {"cells": {"r.em": 0.5}, "claims": {"x": "yes"}}}, "'bad-demo.claims.x'"),
    ({"format": 2, "meta": {}, "tables": [1]}, "'tables'"),
    ({"format": 2, "meta": {}, "tables": {"bad-demo": {"cells": {}, "examples": {"r.em": [1, 0]}}}},
     "'bad-demo.examples.r.em'"),
    ("[1, 2", "em.json:1"),
])
def test_baseline_edited_into_nonsense(tmp_path, capsys, demo_paper, baseline, must):
    name, _ = demo_paper()
    _finished_run(tmp_path / "runs", {"metrics": {"exact_match": {"value": 0.5, "ci95": [0.0, 1.0], "n": 2}}})
    path = tmp_path / "baselines" / "smoke" / f"{name}.json"
    path.parent.mkdir(parents=True)
    path.write_text(baseline if isinstance(baseline, str) else json.dumps(baseline))
    must = must.replace("em.json", f"{name}.json")
    rc, err = repro(capsys, "gate", name, "--runs-dir", str(tmp_path / "runs"), "--baselines",
                    str(tmp_path / "baselines"))
    assert_bad_input(rc, err, f"{name}.json", must)
