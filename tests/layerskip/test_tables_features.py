"""Spec features the LayerSkip tables rely on (suite/tables.py, suite/compare.py, suite/papers.py), on small
hand-written specs: row-level skips with a reason, ``produce`` merged over defaults, contradiction markers,
claims about cells not filled at a profile, and the plan's one missing-inputs message."""
from __future__ import annotations

import pytest

from suite.compare import evaluate_table
from suite.papers import Missing, PlannedStep, blocked_runs, format_plan, missing_message
from suite.report import cell_text
from suite.tables import TableSpecError, load_table

SPEC = """
id: demo
profiles: {smoke: {}, mini: {}, paper: {}}
defaults:
  task: humaneval
  produce: {kind: lm-eval, tasks: [a, b], model_args: {dtype: float16}}
definitions:
  Acc: "fraction correct, all 164 problems"
not_reproducible: "needs the never-released model X"
columns:
  - {id: acc, label: Acc, metric: "pass@1"}
  - {id: other, label: Other, metric: "pass@1"}
rows:
  - {id: r1, label: "one", run: {system: oracle}, paper: {acc: 1.0}}
  - {id: r2, label: "two", artifact: art2, produce: {model_args: {model: org/m, exit_layer: 2}}, paper: {acc: 0.5}}
  - {id: r3, label: "three", run: {system: wrong}, paper: {acc: 0.1, other: 0.2},
     skip: {by_profile: {smoke: "no data here", mini: [other], paper: []}}}
claims:
  - {id: c, text: "r3 other beats r1", check: {left: r3.other, op: ">", right: r1.other}}
contradictions:
  - {id: x, text: "the text says 0.6, the table 0.5", where: [r2.acc]}
  - {id: y, text: "a typo in the setup", where: table}
  - {id: z, text: "about row three's other column", where: [r3.other]}
"""


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "demo.yaml"
    p.write_text(SPEC)
    return p


def test_produce_is_merged_over_defaults_and_only_artifact_rows_get_it(path):
    spec = load_table(path, "paper")
    assert spec.artifacts() == {"art2": {"kind": "lm-eval", "tasks": ["a", "b"],
                                         "model_args": {"dtype": "float16", "model": "org/m", "exit_layer": 2}}}
    assert spec.rows[0].produce is None


def test_row_skip_reason_keeps_paper_values_and_says_why(path, tmp_path):
    spec = load_table(path, "smoke")
    r3 = spec.rows[2]
    assert r3.run is None and r3.unavailable == "no data here" and "(not run: no data here)" in r3.label
    res = evaluate_table(spec, tmp_path)
    assert res.cells["r3.acc"].verdict == "not run" and res.cells["r3.acc"].paper == 0.1


def test_contradiction_markers_notes_and_claims_on_unfilled_cells(path, tmp_path):
    spec = load_table(path, "mini")  # r3.other is skipped here: its marker moves to the row label
    assert spec.title.endswith("[C2]") and spec.rows[2].label.endswith("[C3]")
    assert spec.notes[0] == "Not reproducible from the paper's released artefacts: needs the never-released model X"
    assert spec.notes[1] == "Definition — Acc: fraction correct, all 164 problems"
    assert spec.notes[2].startswith("[C1] The paper contradicts itself: the text says 0.6")
    res = evaluate_table(spec, tmp_path)
    assert res.cells["r2.acc"].marks == ("[C1]",) and cell_text(res.cells["r2.acc"], "{:.2f}").endswith("[C1]")
    assert res.claims[0].holds is None  # a claim about a skipped cell is "not run", not a spec error
    assert load_table(path, "paper").cell_marks["r3.other"] == ("[C3]",)


def test_bad_contradiction_and_produce_fail_with_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(SPEC.replace("where: [r2.acc]", "where: [r9.acc]"))
    with pytest.raises(TableSpecError, match=r"bad.yaml: contradiction x names 'r9.acc'"):
        load_table(p, "paper")
    p.write_text(SPEC.replace("  - {id: r1, label: \"one\", run: {system: oracle}, paper: {acc: 1.0}}",
                              "  - {id: r1, label: \"one\", produce: {kind: lm-eval}, paper: {acc: 1.0}}"))
    with pytest.raises(TableSpecError, match="needs the row's 'artifact'"):
        load_table(p, "paper")


def test_plan_message_names_each_missing_input_once():
    miss = Missing("checkpoint org/m", "download it")
    steps = [PlannedStep("run a", run_hash="h1", missing=(miss,)), PlannedStep("run b", run_hash="h2", missing=(miss,)),
             PlannedStep("run c", run_hash="h3", gpu_hours=1.5)]
    msg = missing_message(steps)
    assert msg.count("checkpoint org/m") == 1 and "needed by 2 steps" in msg
    assert blocked_runs(steps) == {"h1", "h2"}
    table = format_plan(steps)
    assert "MISSING checkpoint org/m" in table and "1.50" in table and "estimated 1.5 GPU-hours" in table
    assert missing_message(steps[2:]) == ""
