"""Hostile programs a model could emit (or a tester would try): each must fail, for its reason, harmlessly.

Every case is checked for the same side effects whatever its verdict: the sentinel
file outside the sandbox is untouched, no file appeared in the project, the host
listener got no connection, the evaluator's secret is not in the result, no process
carrying the case's marker survives, and a host bystander process is still alive.
Programs of kind ``task`` are completions of a tiny HumanEval-shaped problem
(``add``), wrong on purpose: passing one would be a false pass.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from sandbox_cases import TEST_ABS, TEST_EQ, TEST_LINES, TEST_MATH, task_program

from suite.sandbox import Limits, Program, run_many, run_python
from suite.sandbox_isolation import bwrap_features

HOSTILE_DIR = Path(__file__).with_name("hostile")
TESTS = {"eq": TEST_EQ, "abs": TEST_ABS, "math": TEST_MATH, "lines": TEST_LINES}


@dataclass(frozen=True)
class Hostile:
    """One file of ``hostile/``: ``# key: value`` header lines, then the program (or the completion)."""

    name: str
    attack: str
    code: str
    expect: str
    """Regex the recorded reason must match."""
    kind: str = "program"
    test: str = "eq"
    timeout_s: float = 3.0
    cpu_s: int | None = None
    slow: bool = False
    needs: str = ""
    """A bwrap option the case depends on (e.g. ``--size`` for a bounded /tmp)."""


def load(path: Path) -> Hostile:
    lines = path.read_text(encoding="utf-8").splitlines()
    header: dict[str, str] = {}
    while lines and re.match(r"# \w+: ", lines[0]):
        key, value = lines.pop(0)[2:].split(": ", 1)
        header[key] = value
    unknown = set(header) - {"attack", "expect", "kind", "test", "timeout_s", "cpu_s", "slow", "needs"}
    if unknown or "expect" not in header or "attack" not in header:
        raise ValueError(f"{path}: header needs attack and expect, knows no {sorted(unknown)}")
    return Hostile(path.stem, header["attack"], "\n".join(lines) + "\n", header["expect"],
                   header.get("kind", "program"), header.get("test", "eq"), float(header.get("timeout_s", 3)),
                   int(header["cpu_s"]) if "cpu_s" in header else None, header.get("slow") == "yes",
                   header.get("needs", ""))


HOSTILE = [load(p) for p in sorted(HOSTILE_DIR.glob("*.txt"))]


def _program(case: Hostile, world) -> Program:
    code = world.substitute(case.code)
    return task_program(code, TESTS[case.test]) if case.kind == "task" else Program(code)


def _limits(case: Hostile) -> Limits:
    return Limits(timeout_s=case.timeout_s, cpu_s=case.cpu_s)


def _assert_harmless(case: Hostile, result, world) -> None:
    assert not result.passed, f"{case.name}: a hostile program passed"
    assert re.search(case.expect, result.reason), f"{case.name}: reason {result.reason!r} !~ {case.expect!r}"
    assert world.sentinel.read_text() == world.sentinel_text and len(list(world.sentinel.parent.iterdir())) == 1
    assert not (world.project / "PWNED_BY_SANDBOX").exists()
    assert not world.pending_connection(), f"{case.name}: reached the host's listening port"
    assert world.secret not in result.reason + result.stderr
    assert world.marked_processes() == [], f"{case.name}: processes outlived the sandbox"
    assert world.bystander.poll() is None, f"{case.name}: killed a host process"
    assert len(result.stderr.encode()) <= Limits().output_bytes


def _param(case: Hostile):
    return pytest.param(case, id=case.name, marks=[pytest.mark.slow] if case.slow else [])


@pytest.mark.parametrize("case", [_param(c) for c in HOSTILE])
def test_hostile_program_fails_harmlessly(case, isolation, world):
    """Each file of hostile/ fails for the reason its header states, and touches nothing outside."""
    if case.needs and case.needs not in bwrap_features(isolation.bwrap or ""):
        pytest.skip(f"this bwrap has no {case.needs}")
    result = run_python(_program(case, world), limits=_limits(case), isolation=isolation)
    _assert_harmless(case, result, world)


def test_fast_hostile_programs_in_parallel(isolation, world):
    """The pool gives the same verdicts as one-at-a-time runs (workers share nothing)."""
    cases = [c for c in HOSTILE if not c.slow and c.timeout_s == 3 and not c.cpu_s and not c.needs
             and "BYSTANDER" not in c.code]
    results = run_many([_program(c, world) for c in cases], limits=Limits(timeout_s=10), workers=3,
                       isolation=isolation)
    for case, result in zip(cases, results):
        _assert_harmless(case, result, world)


def test_the_set_is_complete():
    assert len(HOSTILE) >= 25 and len({c.name for c in HOSTILE}) == len(HOSTILE)
    assert all(c.test in TESTS and c.kind in ("program", "task") for c in HOSTILE)


@pytest.mark.parametrize("test", sorted(TESTS))
def test_the_right_completion_passes_every_test_shape(test, isolation):
    """Control: the defences above do not fail an honest completion."""
    result = run_python(task_program("    return a + b\n", TESTS[test]), isolation=isolation)
    assert result.passed and result.reason == "passed", result
