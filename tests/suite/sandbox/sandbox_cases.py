"""A tiny HumanEval-shaped problem (``add``) and the test shapes HumanEval uses, for the sandbox tests."""
from __future__ import annotations

from suite.sandbox import Program

PROMPT = 'def add(a: float, b: float) -> float:\n    """Return a + b."""\n'
TEST_EQ = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(1, 1) == 2\n"
TEST_ABS = ("def check(candidate):\n    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9\n"
            "    assert abs(candidate(1.5, 0.25) - 1.75) < 1e-9\n")
TEST_MATH = "import math\n\ndef check(candidate):\n    assert math.isclose(candidate(0.5, 0.25), 0.75)\n"
TEST_LINES = "def check(candidate):\n    got = candidate(2, 3)\n    assert got == 5\n    return got\n"


def task_program(completion: str, test: str = TEST_EQ) -> Program:
    """A HumanEval-shaped program around a tiny problem: ``add``, whose right body is ``return a + b``."""
    return Program(source=PROMPT + completion, test=test, context=PROMPT, entry_point="add")
