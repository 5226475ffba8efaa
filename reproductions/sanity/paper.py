"""The suite's own proof: a table whose true values are known exactly.

An oracle that answers with the reference solutions must score pass@1 = 1 on
all 164 HumanEval problems, and a system that is wrong on purpose must score 0.
If either fails, the scorer, the sandbox or the runner is broken, and no other
table can be trusted.
"""
from pathlib import Path

from suite.papers import Paper

PAPER = Paper(name="sanity", title="Suite self-test (HumanEval oracle)", arxiv="2107.03374",
              tables_dir=Path(__file__).parent / "tables")
