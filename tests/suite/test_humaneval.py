"""HumanEval adapter: the oracle passes all 164 problems, a wrong system passes none."""
import pytest

from suite.interfaces import Generation
from suite.sandbox import run_python
from suite.stats import pass_at_k
from suite.tasks.humaneval import HumanEvalTask


def test_pass_at_k_unbiased_estimator():
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)
    with pytest.raises(ValueError):
        pass_at_k(1, 1, 2)


def test_sandbox_timeout_and_blocked_calls():
    assert run_python("while True: pass", timeout_s=1).status == "timeout"
    r = run_python("import os\nos.system('true')")
    assert not r.passed and "blocked" in r.detail
    assert run_python("assert 1 + 1 == 2").passed


def test_all_problems_load_in_order():
    task = HumanEvalTask()
    ids = [ex.id for ex in task.examples("test", None)]
    assert len(ids) == 164 and ids[0] == "HumanEval/0" and ids[-1] == "HumanEval/163"


def test_oracle_and_wrong_on_first_problems():
    task = HumanEvalTask()
    for ex in list(task.examples("test", None))[:5]:
        good = task.score(ex, Generation(ex.data["canonical_solution"]))
        bad = task.score(ex, Generation("    raise NotImplementedError\n"))
        assert good["pass@1"] == 1.0 and bad["pass@1"] == 0.0


def test_score_samples_uses_unbiased_pass_at_k():
    task = HumanEvalTask(samples_per_problem=4, ks=(1, 2))
    ex = next(iter(task.examples("test", None)))
    outs = [Generation(ex.data["canonical_solution"])] * 2 + [Generation("    return None\n")] * 2
    s = task.score_samples(ex, outs)
    assert s["pass@1"] == pytest.approx(0.5) and s["pass@2"] == pytest.approx(1 - 1 / 6)
