"""The LayerSkip specs at the paper profile: every table of arXiv 2404.16710v4 accounted for, every known
contradiction of the paper shown next to the cells it affects, metric definitions stated, and the wiring of
Tables 6, 7 and 11 as the paper measured them."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from suite.compare import evaluate_table
from suite.registry import PROFILES
from suite.tables import load_table

ROOT = Path(__file__).resolve().parents[2]
TABLES = ROOT / "reproductions" / "layerskip" / "tables"


def _spec(name: str, profile: str = "paper"):
    return load_table(TABLES / name, profile)


def _all(profile: str):
    return {p.name: load_table(p, profile) for p in sorted(TABLES.glob("*.yaml"))}


def test_every_table_of_the_paper_is_accounted_for():
    from reproductions.layerskip.paper import PAPER

    specs = _all("paper")
    numbers = {int(m.group(1)) for s in specs.values() for m in [re.match(r"Table (\d+)", s.title)] if m}
    assert numbers == {1, 2, 3, 4, 5, 6, 7, 11}
    assert "Tables 8, 9 and 10" in PAPER.other_tables


@pytest.mark.parametrize("profile", ["smoke", "mini"])
def test_report_coverage_names_every_table(profile):
    from reproductions.layerskip.paper import PAPER

    text = PAPER.coverage(PAPER.all_tables(profile))
    for n in (1, 2, 3, 4, 5, 6, 7, 11):
        assert re.search(rf"Table {n}\b", text), n
    assert "Tables 8, 9 and 10" in text and "Not evaluated at this profile" in text
    assert "Regenerated at this profile: " in text and "Table 11" in text.split("Not evaluated")[0]


CONTRADICTIONS = [  # (spec, contradiction id, cells that must carry its marker)
    ("table6_topv2.yaml", "acceptance-e12", ["ss12.acc"]),
    ("table3_generation.yaml", "toks-vs-speedup", ["cnn_ss.toks", "xsum_ss.toks", "he_ss.toks"]),
    ("table3_generation_13b.yaml", "draft-verify-text", ["cnn_dv.speedup"]),
    ("table3_generation.yaml", "abstract-vs-conclusion", ["cnn_ss.speedup"]),
    ("table4_from_scratch.yaml", "abstract-vs-conclusion", ["s7_ss.speedup"]),
    ("table7_kvq_reuse.yaml", "saving-9-20ms", ["ss_mid.topv2", "ss_mid_noreuse.topv2"]),
    ("table2_continual_pretraining_llama3.yaml", "siqa-equals-race-1b-mid", ["b1_mid.siqa", "b1_mid.race_h"]),
    ("table6_topv2.yaml", "early-exit-e12", ["ee12.em"]),
    ("table11_topv2_cpu.yaml", "early-exit-e12", ["ee_mid.em"]),
]


@pytest.mark.parametrize("name, cid, cells", CONTRADICTIONS, ids=[f"{n}:{c}" for n, c, _ in CONTRADICTIONS])
def test_contradictions_are_marked_next_to_their_cells(name, cid, cells, tmp_path):
    spec = _spec(name)
    c = next(c for c in spec.contradictions if c.id == cid)
    res = evaluate_table(spec, tmp_path)
    for key in cells:
        assert c.mark in res.cells[key].marks, key
    from suite.report import cell_text

    assert c.mark in cell_text(res.cells[cells[0]], spec.column(cells[0].split(".")[1]).fmt)
    assert any(n.startswith(f"{c.mark} The paper contradicts itself") for n in spec.notes)


def test_table_and_row_level_contradictions_mark_titles_and_labels():
    t4 = _spec("table4_from_scratch.yaml")
    heads = next(c for c in t4.contradictions if c.id == "heads-7b")
    a100 = next(c for c in t4.contradictions if c.id == "a100-30gb")
    assert a100.mark in t4.title and "A100 30 GB" in a100.text
    assert all(heads.mark in r.label for r in t4.rows if r.id.startswith("s7_"))
    t5 = _spec("table5_code_finetune.yaml")
    assert any("16 attention heads" in c.text for c in t5.contradictions) and "[C1]" in t5.title


@pytest.mark.parametrize("name", sorted(p.name for p in TABLES.glob("table*.yaml")))
def test_every_paper_table_states_definitions_precision_and_samples(name):
    spec = _spec(name)
    text = " ".join(f"{k}: {v}" for k, v in spec.definitions).lower()
    assert spec.definitions, name
    assert "precision" in text or "float32" in text, name
    assert "samples" in text or "examples" in text or "problems" in text, name


def test_no_internal_citations_in_user_facing_layerskip_text():
    bad = re.compile(r"reference/|reference §|design sketch")
    for path in [p for p in (ROOT / "reproductions" / "layerskip").rglob("*") if p.suffix in (".py", ".yaml")]:
        assert not bad.search(path.read_text()), path


def test_tables_4_and_5_are_specified_not_reproducible_and_runnable_with_user_checkpoints():
    for name, aliases in (("table4_from_scratch.yaml", {"scratch-1.5b-baseline", "scratch-1.5b-layerskip",
                                                         "scratch-7b-baseline", "scratch-7b-layerskip"}),
                          ("table5_code_finetune.yaml", {"code-7b-baseline", "code-7b-layerskip"})):
        spec = _spec(name)
        assert spec.not_reproducible
        assert spec.notes[0].startswith("Not reproducible from the paper's released artefacts")
        assert {r.run.params_dict["model"] for r in spec.rows} == aliases
        for profile in ("smoke", "mini"):
            assert _spec(name, profile).skipped
    t5 = {r.id: r.run.params_dict for r in _spec("table5_code_finetune.yaml").rows}
    assert t5["ss"]["exit_layer"] == 6 and t5["ss"]["num_speculations"] == 12


def test_lm_eval_rows_declare_their_call():
    for name, mid in (("table1_continual_pretraining.yaml", {"7b": 16, "13b": 20}),
                      ("table2_continual_pretraining_llama3.yaml", {"8b": 16, "1b": 8})):
        spec = _spec(name)
        arts = spec.artifacts()
        assert len(arts) == 8 and all(r.artifact in arts for r in spec.rows)
        for art, produce in arts.items():
            assert produce["kind"] == "lm-eval" and len(produce["tasks"]) == 14
            assert produce["model_args"]["dtype"] == "float16" and "/" in produce["model_args"]["model"]
            size = next(k for k in mid if f"-{k}-" in art)
            assert produce["model_args"].get("exit_layer") == (mid[size] if "-l" + str(mid[size]) in art
                                                                and art.endswith(f"-l{mid[size]}") else None)


def test_table6_times_1000_sampled_examples_and_scores_the_full_test_set():
    spec = _spec("table6_topv2.yaml")
    for row in spec.rows:
        assert row.run.limit is None and "sample" not in row.run.task_args_dict
        ms = row.cell_runs["ms"]
        assert ms.task_args_dict["sample"] == 1000 and ms.params_dict == row.run.params_dict
    assert "1,000" in spec.caption


def test_table7_cnndm_column_has_its_own_runs_at_the_paper_profile():
    spec = _spec("table7_kvq_reuse.yaml")
    for row in spec.rows:
        cnn = row.cell_runs["cnndm"]
        assert cnn.task == "cnn_dm" and row.run.task == "topv2"
        assert cnn.params_dict["exit_layer"] == row.run.params_dict["exit_layer"]
        assert cnn.params_dict["device"] == "cpu" and "cnndm" not in row.skip
    for profile in ("smoke", "mini"):
        assert all("cnndm" in r.skip and not r.cell_runs for r in _spec("table7_kvq_reuse.yaml", profile).rows)


def test_table11_runs_at_the_paper_profile_on_a_cpu_and_shares_runs_with_table7():
    t11 = _spec("table11_topv2_cpu.yaml")
    assert t11.skipped is None
    rows = {r.id: r.run for r in t11.rows if r.run is not None}
    assert set(rows) == {r.id for r in t11.rows} - {"ss_fast"}  # our mini-only setting does not run here
    assert rows["ar"].params_dict["model"] == "topv2-baseline" and rows["ss_mid"].params_dict["exit_layer"] == 12
    assert all(r.params_dict["device"] == "cpu" and r.limit == 100 for r in rows.values())
    assert len(rows["ar"].task_args_dict["domains"]) == 8
    t7 = {r.hash for r in _spec("table7_kvq_reuse.yaml").runs()}
    assert rows["ss_hi"].hash in t7 and rows["ss_mid"].hash in t7


@pytest.mark.parametrize("profile", PROFILES)
def test_mini_and_smoke_cpu_tables_do_not_pin_a_device(profile):
    if profile == "paper":
        return
    for name in ("table7_kvq_reuse.yaml", "table11_topv2_cpu.yaml"):
        assert all("device" not in r.params_dict for r in _spec(name, profile).runs())
