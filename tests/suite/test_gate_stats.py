"""The gate's decisions: paired per-example tests for sampled metrics, exact tolerances for deterministic cells,
the bootstrap CI behind "matches", and pinned results only from committed code."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from suite import gate, pinning
from suite.aggregate import mean_metrics
from suite.cli import main
from suite.compare import evaluate_table
from suite.interfaces import Generation, OneAtATime
from suite.papers import Paper
from suite.records import write_json_atomic
from suite.registry import PAPERS, SYSTEMS
from suite.runner import run_dir
from suite.stats import bootstrap_ci
from suite.tables import load_table

N = 60


# ----------------------------------------------------------------------------- the paired test itself


def test_paired_test_ignores_a_few_flips_and_catches_a_systematic_change():
    base = {f"e{i}": float(i % 2) for i in range(100)}
    assert not gate.paired_test(base, dict(base)).significant
    two_flips = {**base, "e0": 1.0, "e1": 0.0}  # one up, one down: same mean
    assert not gate.paired_test(base, two_flips).significant
    one_down = {**base, "e1": 0.0}  # -0.01: a fixed ±0.003 tolerance would fail on this, the paired test must not
    assert not gate.paired_test(base, one_down).significant
    six_down = {**base, **{f"e{i}": 0.0 for i in (1, 3, 5, 7, 9, 11)}}
    res = gate.paired_test(base, six_down)
    assert res.significant and res.changed == 6 and res.mean_diff == pytest.approx(-0.06) and res.ci95[1] < 0


# ----------------------------------------------------------------------------- end to end through the CLI


def register_for_test(monkeypatch, registry, name, target) -> None:
    """A registration undone after the test, so other tests see only the built-ins."""
    registry.names()  # the entry points first: only the temporary name changes
    monkeypatch.setitem(registry._targets, name, target)
    monkeypatch.setitem(registry._sources, name, "test")


class _ListModel(OneAtATime):
    """Answers TOPv2 correctly except for the example indices listed in its 'weights' file."""

    def __init__(self, params, ctx):
        self.weights = Path(params["model"]).read_text()
        self.wrong = {int(x) for x in self.weights.split(",") if x}

    def identity(self):
        return {"weights": self.weights}

    def generate(self, request, example):
        i = int(example.id.split(":")[1])
        return Generation("[IN:WRONG ]" if i in self.wrong else example.data["semantic_parse"])


SPEC = """
id: gate-demo
paper: demo
title: "Demo"
defaults: {task: topv2, task_args: {domains: [weather], check_sha256: false}, limit: LIMIT}
profiles:
  smoke: {}
columns:
  - {id: em, label: EM, metric: exact_match}
  - {id: cost, label: Cost, metric: cost}
rows:
  - id: m
    run: {system: SYSTEM, params: {model: WEIGHTS}}
    skip: [cost]
  - id: c
    artifact: costs
    skip: [em]
gate:
  em: {abs: 0.001}
"""


@pytest.fixture
def setup(tmp_path, monkeypatch):
    data = tmp_path / "data" / "topv2" / "TOPv2_Dataset"
    data.mkdir(parents=True)
    rows = ["domain\tutterance\tsemantic_parse"] + [f"weather\tq {i}\t[IN:GET_WEATHER x{i} ]" for i in range(N)]
    (data / "weather_test.tsv").write_text("\n".join(rows) + "\n")
    system = f"list-model-{uuid.uuid4().hex[:8]}"
    register_for_test(monkeypatch, SYSTEMS, system, _ListModel)
    weights = tmp_path / "weights.txt"
    weights.write_text("0,1,2,3,4,5,6,7,8,9")
    tables = tmp_path / "tables"
    tables.mkdir()
    (tables / "t.yaml").write_text(SPEC.replace("SYSTEM", system).replace("WEIGHTS", str(weights))
                                   .replace("LIMIT", str(N)))
    paper = f"gatedemo{uuid.uuid4().hex[:8]}"
    register_for_test(monkeypatch, PAPERS, paper, Paper(name=paper, title="Demo", arxiv="0000.00000",
                                                        tables_dir=tables))
    common = ["--profile", "smoke", "--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "reports"),
              "--baselines", str(tmp_path / "baselines"), "--data-root", str(tmp_path / "data")]
    costs = tmp_path / "runs" / "smoke" / "artifacts" / "costs" / "metrics.json"
    write_json_atomic(costs, {"key": "k", "metrics": {"cost": {"value": 3.25, "kind": "stat"}}})
    return paper, common, weights, costs


def _gate(capsys, paper, common) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["gate", paper, *common])
    return rc, capsys.readouterr().out


def test_baseline_stores_per_example_scores_and_the_gate_uses_them(tmp_path, capsys, setup):
    paper, common, weights, costs = setup
    assert main(["reproduce", paper, *common]) == 0
    assert main(["gate", paper, *common, "--update-baselines"]) == 0
    base = json.loads((tmp_path / "baselines" / "smoke" / f"{paper}.json").read_text())
    assert base["format"] == 2 and base["meta"]["git_commit"]
    t = base["tables"]["gate-demo"]
    assert t["cells"]["m.em"] == pytest.approx(50 / 60) and t["cells"]["c.cost"] == 3.25
    assert len(t["examples"]["m.em"]) == N and t["examples"]["m.em"]["weather_test:0"] == 0.0
    assert "c.cost" not in t["examples"]  # an artifact cell has no per-example records: gated exactly
    assert _gate(capsys, paper, common)[0] == 0

    # one example flips (EM -1/60, far beyond the spec's ±0.001): within noise for the paired test
    weights.write_text("0,1,2,3,4,5,6,7,8,9,10")
    assert main(["reproduce", paper, *common]) == 0
    assert _gate(capsys, paper, common)[0] == 0

    # the deterministic cost-model cell moves by 1e-6: exact, so it regresses
    write_json_atomic(costs, {"key": "k", "metrics": {"cost": {"value": 3.250001, "kind": "stat"}}})
    rc, out = _gate(capsys, paper, common)
    assert rc == 1 and "gate-demo:c.cost" in out and "allowed exact" in out and "m.em" not in out

    # a systematic change: eight examples break
    write_json_atomic(costs, {"key": "k", "metrics": {"cost": {"value": 3.25, "kind": "stat"}}})
    weights.write_text(",".join(str(i) for i in range(18)))
    assert main(["reproduce", paper, *common]) == 0
    rc, out = _gate(capsys, paper, common)
    assert rc == 1 and "gate-demo:m.em" in out and "paired over 60 examples: 8 changed" in out and "excludes 0" in out


def test_report_says_how_each_column_is_gated(tmp_path, setup):
    paper, common, *_ = setup
    assert main(["reproduce", paper, *common]) == 0
    md = next((tmp_path / "reports").rglob("report.md")).read_text()
    assert "Gate vs pinned baseline: EM: paired, Cost: exact" in md


def test_format_1_baseline_still_gates_by_tolerance(tmp_path, capsys, setup):
    paper, common, weights, _ = setup
    assert main(["reproduce", paper, *common]) == 0
    path = tmp_path / "baselines" / "smoke" / f"{paper}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"gate-demo": {"cells": {"m.em": 50 / 60 + 0.01, "c.cost": 3.25}, "claims": {}}}))
    rc, out = _gate(capsys, paper, common)
    assert rc == 1 and "gate-demo:m.em" in out and "allowed ±0.001" in out


# ----------------------------------------------------------------------------- the CI behind "matches"


CI_SPEC = """
id: ci-demo
defaults: {task: humaneval}
profiles: {smoke: {limit: 40}}
columns: [{id: acc, label: Acc, metric: "pass@1"}]
rows:
  - {id: a, run: {system: oracle}, paper: {acc: PAPER}}
tolerances: {acc: {abs: 0.01}}
"""


def test_matches_verdict_rests_on_the_records_bootstrap_ci(tmp_path):
    records = [{"id": f"HumanEval/{i}", "scores": {"pass@1": float(i % 4 != 0)}} for i in range(40)]  # 0.75
    metrics = mean_metrics(records, seed=0)
    lo, hi = bootstrap_ci([r["scores"]["pass@1"] for r in records], seed=0)
    assert metrics["pass@1"]["ci95"] == [lo, hi] and lo < 0.70 < 0.75 < 0.80 < hi

    def verdict(paper_value: float) -> str:
        spec_file = tmp_path / "t.yaml"
        spec_file.write_text(CI_SPEC.replace("PAPER", repr(paper_value)))
        table = load_table(spec_file, "smoke")
        write_json_atomic(run_dir(table.rows[0].run, tmp_path / "runs") / "metrics.json", {"metrics": metrics})
        return evaluate_table(table, tmp_path / "runs").cells["a.acc"].verdict

    assert verdict(0.755) == "matches"  # within ±0.01
    assert verdict(hi - 0.01) == "matches"  # outside ±0.01, inside the CI
    assert verdict(hi + 0.01) == "deviates"  # outside both
    assert verdict(lo - 0.01) == "deviates"


# ----------------------------------------------------------------------------- committed results


def test_committed_targets():
    repo = pinning.REPO_ROOT
    if not (repo / ".git").exists():
        pytest.skip("not a git checkout")
    assert pinning.is_committed_target(repo / "reports" / "baselines" / "smoke" / "layerskip.json")
    assert not pinning.is_committed_target(repo / "reports" / "layerskip" / "smoke")  # smoke reports are ignored
    assert not pinning.is_committed_target(Path("/tmp") / "anything")


def test_pinning_from_a_dirty_tree_is_refused_or_marked(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(pinning, "tree_is_dirty", lambda: True)
    monkeypatch.setattr(pinning, "is_committed_target", lambda path: True)
    monkeypatch.setattr(pinning, "git_state", lambda: {"commit": "abc", "dirty": True})
    common = ["--runs-dir", str(tmp_path / "runs"), "--out", str(tmp_path / "reports"), "--baselines",
              str(tmp_path / "baselines")]
    capsys.readouterr()
    assert main(["gate", "sanity", *common, "--update-baselines"]) == 2
    assert "refusing to write a baseline" in capsys.readouterr().err
    assert not (tmp_path / "baselines").exists()
    assert main(["report", "sanity", *common]) == 2
    assert not (tmp_path / "reports").exists()

    assert main(["gate", "sanity", *common, "--update-baselines", "--allow-dirty"]) == 0
    meta = json.loads((tmp_path / "baselines" / "smoke" / "sanity.json").read_text())["meta"]
    assert meta["git_dirty"] and meta["allow_dirty"] and "uncommitted" in meta["warning"]
    capsys.readouterr()
    assert main(["gate", "sanity", *common]) in (0, 1)
    assert "uncommitted" in capsys.readouterr().out  # the gate repeats the warning
    import suite.report
    monkeypatch.setattr(suite.report, "git_state", lambda: {"commit": "abc", "dirty": True})
    assert main(["report", "sanity", *common, "--allow-dirty"]) == 0
    md = (tmp_path / "reports" / "sanity" / "smoke" / "report.md").read_text()
    assert "**WARNING: built from a working tree with uncommitted changes" in md.split("## ")[0]
