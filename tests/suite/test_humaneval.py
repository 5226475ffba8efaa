"""HumanEval adapter: the oracle passes all 164 problems, a wrong system passes none, nothing runs unsandboxed."""
import pytest

from suite import sandbox
from suite.interfaces import Generation
from suite.sandbox import SandboxUnavailable, find_isolation, run_python
from suite.stats import pass_at_k
from suite.tasks.humaneval import HumanEvalTask

_ISOLATION, _WHY = find_isolation()
needs_sandbox = pytest.mark.skipif(_ISOLATION is None, reason=f"no OS isolation on this machine: {_WHY}")
WRONG = "    raise NotImplementedError\n"


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    with pytest.raises(ValueError):
        pass_at_k(1, 1, 2)


@needs_sandbox
def test_sandbox_verdicts_come_from_the_report_not_the_exit_status():
    assert run_python("assert 1 + 1 == 2").passed
    assert run_python("while True: pass", timeout_s=1).status == "timeout"
    assert run_python("import os\nos._exit(0)").reason == "exit 0 without a pass report"
    failed = run_python("assert 1 + 1 == 3")
    assert failed.status == "failed" and failed.reason.startswith("exit 1: AssertionError")


def test_all_problems_load_in_order():
    task = HumanEvalTask()
    ids = [ex.id for ex in task.examples("test", None)]
    assert len(ids) == 164 and ids[0] == "HumanEval/0" and ids[-1] == "HumanEval/163"


@needs_sandbox
def test_oracle_and_wrong_on_first_problems():
    task = HumanEvalTask()
    for ex in list(task.examples("test", None))[:5]:
        good = task.score(ex, Generation(ex.data["canonical_solution"]))
        bad = task.score(ex, Generation(WRONG))
        assert good["pass@1"] == 1.0 and bad["pass@1"] == 0.0


@needs_sandbox
def test_score_samples_uses_unbiased_pass_at_k():
    task = HumanEvalTask(samples_per_problem=4, ks=(1, 2))
    ex = next(iter(task.examples("test", None)))
    outs = [Generation(ex.data["canonical_solution"])] * 2 + [Generation("    return None\n")] * 2
    s = task.score_samples(ex, outs)
    assert s["pass@1"] == pytest.approx(0.5) and s["pass@2"] == pytest.approx(1 - 1 / 6)


@needs_sandbox
def test_score_batch_matches_one_example_at_a_time():
    task = HumanEvalTask(samples_per_problem=2, ks=(1, 2))
    examples = list(task.examples("test", None))[10:14]
    outputs = [[Generation(ex.data["canonical_solution"]), Generation(WRONG)] for ex in examples]
    outputs[1] = [Generation(WRONG), Generation(WRONG)]
    batched = task.score_batch(examples, outputs)
    assert batched == [task.score_samples(ex, outs) for ex, outs in zip(examples, outputs)]
    assert [row["pass@1"] for row in batched] == [0.5, 0.0, 0.5, 0.5]


@needs_sandbox
@pytest.mark.slow
def test_oracle_passes_all_164_and_wrong_passes_none():
    task = HumanEvalTask()
    examples = list(task.examples("test", None))
    good = task.score_batch(examples, [[Generation(ex.data["canonical_solution"])] for ex in examples])
    bad = task.score_batch(examples, [[Generation(WRONG)] for ex in examples])
    assert [ex.id for ex, row in zip(examples, good) if row["pass@1"] != 1.0] == []
    assert [ex.id for ex, row in zip(examples, bad) if row["pass@1"] != 0.0] == []


def test_task_refuses_to_run_completions_without_isolation(monkeypatch):
    monkeypatch.setattr(sandbox, "find_isolation", lambda bwrap=None: (None, "bubblewrap (bwrap) is not installed"))
    monkeypatch.delenv(sandbox.ALLOW_UNSANDBOXED, raising=False)
    task = HumanEvalTask()
    ex = next(iter(task.examples("test", None)))
    with pytest.raises(SandboxUnavailable, match="REPRO_ALLOW_UNSANDBOXED=1"):
        task.score(ex, Generation(ex.data["canonical_solution"]))
