"""The suite's own proof: tables whose true values are known before any model runs.

* An oracle that answers with the reference solutions must score pass@1 = 1 on all 164 HumanEval
  problems, and a system that is wrong on purpose must score 0: the sandbox and pass@k are right.
* Lead-3 on CNN/DM and Lead-1 on XSUM must reproduce the published extractive baselines (See et al. 2017;
  Narayan et al. 2018) within their confidence intervals: the summarization data, references and ROUGE
  scorers are right.

If either fails, no other table can be trusted.
"""
from pathlib import Path

from suite.papers import Paper

PAPER = Paper(name="sanity", title="Suite self-test (HumanEval oracle, extractive summarization baselines)",
              arxiv="2107.03374", tables_dir=Path(__file__).parent / "tables")
