"""Lead-k and summary-level ROUGE-L: the evidence that the summarization scorers are right before any model runs."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from suite.interfaces import Example, GenerationRequest, RunContext
from suite.metrics import rouge_lsum_f, rouge_n_f, split_sentences
from suite.systems.extractive import LeadSystem, article_of

ROOT = Path(__file__).resolve().parents[2]
SANITY = ROOT / "reproductions" / "sanity" / "tables" / "extractive_baselines.yaml"


def _ctx() -> RunContext:
    return RunContext(profile="smoke", data_root=None, artifacts={})


@pytest.mark.parametrize("text, want", [
    ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
    ("J. K. Rowling wrote it in the U.S. during 1997. It sold.", ["J. K. Rowling wrote it in the U.S. during 1997.",
                                                                   "It sold."]),
    ('He said "Stop." Then he left! Why? 3 reasons.', ['He said "Stop."', "Then he left!", "Why?", "3 reasons."]),
    ("Gary Locke stays . The club won .", ["Gary Locke stays .", "The club won ."]),  # PTB-tokenised references
    ("first line\nsecond line. third stays with it.", ["first line", "second line. third stays with it."]),
    ("", []),
])
def test_split_sentences(text, want):
    assert split_sentences(text) == want


def test_lead_k_takes_the_first_sentences_from_the_article_field():
    ex = Example("a", {"article": "One is here. Two is here. Three is here. Four is here."})
    req = GenerationRequest(prompt="ignored", max_new_tokens=10)
    [g3] = LeadSystem({"k": 3}, _ctx()).predict([req], [ex])
    [g1] = LeadSystem({"k": 1}, _ctx()).predict([req], [ex])
    assert g3.text == "One is here.\nTwo is here.\nThree is here." and g3.stats["sentences_in_article"] == 4
    assert g1.text == "One is here."
    assert LeadSystem({}, _ctx()).identity() == {"impl": "lead-k-1", "k": 3}


def test_lead_falls_back_to_the_prompt_and_rejects_bad_params():
    req = GenerationRequest(prompt="Article: Shot. Text.\nSummary: s\n\nArticle: Real one. Second.\nSummary:",
                            max_new_tokens=5)
    assert article_of(req, Example("x", {})) == "Real one. Second."
    with pytest.raises(ValueError, match="k must be"):
        LeadSystem({"k": 0}, _ctx())
    with pytest.raises(ValueError, match="unknown params"):
        LeadSystem({"n": 2}, _ctx())


def test_rouge_lsum_is_summary_level():
    ref = "The cat sat on the mat. A dog barked loudly."
    swapped = "A dog barked loudly. The cat sat on the mat."
    assert rouge_lsum_f(swapped, ref) == pytest.approx(1.0)  # per-sentence LCS ignores sentence order
    assert rouge_n_f(swapped.lower(), ref.lower(), "L") < 0.7  # one LCS over the whole text does not
    assert rouge_lsum_f("", ref) == 0.0
    # union LCS by hand: reference sentences r1 = "aa bb cc dd", r2 = "ee ff"; candidate c1 = "aa bb xx",
    # c2 = "ff ee dd". r1: union(LCS(r1,c1)={aa,bb}, LCS(r1,c2)={dd}) = 3 hits; r2: LCS(r2,c2) = 1 hit
    # recall 4/6, precision 4/6 -> F 2/3 (one LCS over the whole texts would give 3/6)
    assert rouge_lsum_f("Aa bb xx. Ff ee dd.", "Aa bb cc dd. Ee ff.") == pytest.approx(2 / 3)
    assert rouge_n_f("aa bb xx. ff ee dd.", "aa bb cc dd. ee ff.", "L") == pytest.approx(0.5)


def _articles(tmp_path: Path) -> Path:
    rows = [{"id": f"a{i}", "article": f"Lead sentence {i} is here. Second {i} follows. Third {i} too. Fourth {i}.",
             "highlights": f"Lead sentence {i} is here.\nSecond {i} follows."} for i in range(4)]
    path = tmp_path / "articles.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_lead_through_the_runner_scores_every_rouge(tmp_path, monkeypatch):
    from suite.runner import execute
    from suite.spec import RunSpec

    monkeypatch.setenv("REPRO_CNNDM_JSONL", str(_articles(tmp_path)))
    spec = RunSpec.make("cnn_dm", "lead", "smoke", task_args={"shots": 0}, params={"k": 2})
    res = execute(spec, root=tmp_path / "runs", data_root=None, device="cpu", dtype="float32", quiet=True)
    m = res.metrics["metrics"]
    assert {"rouge1", "rouge2", "rougeL", "rougeLsum"} <= set(m)
    assert m["rougeLsum"]["value"] == pytest.approx(1.0) and m["rouge2"]["value"] == pytest.approx(1.0)
    spec3 = RunSpec.make("cnn_dm", "lead", "smoke", task_args={"shots": 0}, params={"k": 3})
    worse = execute(spec3, root=tmp_path / "runs", data_root=None, device="cpu", dtype="float32", quiet=True)
    assert worse.metrics["metrics"]["rouge1"]["value"] < 1.0  # an extra sentence costs precision: the scorer can fail


def test_sanity_table_skips_xsum_with_the_reason_below_paper():
    from suite.tables import load_table

    for profile in ("smoke", "mini"):
        rows = {r.id: r for r in load_table(SANITY, profile).rows}
        assert rows["xsum_lead1"].run is None and "not run: no XSUM data" in rows["xsum_lead1"].label
        assert rows["cnndm_lead3"].run.params_dict == {"k": 3}
    rows = {r.id: r for r in load_table(SANITY, "paper").rows}
    assert rows["xsum_lead1"].run.task == "xsum" and rows["xsum_lead1"].run.params_dict == {"k": 1}


@pytest.mark.skipif(not os.environ.get("REPRO_DATA_DIR"), reason="needs the 250 FRANK CNN/DM test articles under "
                    "REPRO_DATA_DIR (cnn_dailymail/frank_cnndm_test_250.jsonl)")
def test_lead3_reproduces_see_et_al_on_real_cnndm(tmp_path):
    from suite.compare import evaluate_table
    from suite.data import data_root
    from suite.runner import execute
    from suite.tables import load_table

    spec = load_table(SANITY, "smoke")
    row = next(r for r in spec.rows if r.id == "cnndm_lead3")
    droot = data_root()
    if not (droot / "cnn_dailymail" / "frank_cnndm_test_250.jsonl").is_file():
        pytest.skip("the FRANK CNN/DM file is not under REPRO_DATA_DIR")
    execute(row.run, root=tmp_path, data_root=droot, device="cpu", dtype="float32", quiet=True)
    res = evaluate_table(spec, tmp_path)
    for col in ("r1", "r2", "rlsum"):
        cell = res.cells[f"cnndm_lead3.{col}"]
        assert cell.ci95[0] <= cell.paper <= cell.ci95[1], (col, cell)  # the published value is inside our CI
        assert cell.verdict == "matches"
    assert res.cells["cnndm_lead3.rl"].ours < res.cells["cnndm_lead3.rlsum"].ours - 0.05
