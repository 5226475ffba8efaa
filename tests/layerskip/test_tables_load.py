"""Every LayerSkip table spec loads at every profile, and its cell references resolve (on an empty runs folder)."""
from __future__ import annotations

from pathlib import Path

import pytest

from suite.compare import evaluate_table
from suite.registry import PROFILES, SYSTEMS, TASKS
from suite.tables import load_table

TABLES = Path(__file__).resolve().parents[2] / "reproductions" / "layerskip" / "tables"
SPECS = sorted(TABLES.glob("*.yaml"))


def test_there_are_specs():
    names = {p.name for p in SPECS}
    assert {"table1_continual_pretraining.yaml", "table3_generation.yaml"} <= names


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_loads_and_resolves(path, profile, tmp_path):
    spec = load_table(path, profile)
    if spec.skipped is not None:
        assert spec.skipped.strip()
        return
    for run in spec.runs():
        TASKS.get(run.task)  # the names are registered (built-in or entry point)
        SYSTEMS.get(run.system)
    res = evaluate_table(spec, tmp_path)  # derived cells and claims name existing cells
    assert all(c.verdict == "not run" for c in res.cells.values())


@pytest.mark.parametrize("name", ["table3_generation.yaml", "table3_generation_13b.yaml",
                                  "table1_continual_pretraining.yaml", "table2_continual_pretraining_llama3.yaml"])
def test_released_weight_tables_run_only_at_paper(name):
    for profile in ("smoke", "mini"):
        assert load_table(TABLES / name, profile).skipped
    assert load_table(TABLES / name, "paper").skipped is None


def test_table3_7b_settings_and_paper_values():
    spec = load_table(TABLES / "table3_generation.yaml", "paper")
    rows = {r.id: r for r in spec.rows}
    for task in ("cnn", "xsum", "he"):
        assert rows[f"{task}_ar"].run.params_dict["model"] == "meta-llama/Llama-2-7b-hf"
        for kind in ("ee", "ss"):
            p = rows[f"{task}_{kind}"].run.params_dict
            assert p["model"] == "facebook/layerskip-llama2-7B" and p["exit_layer"] == 8 and p["dtype"] == "float16"
        assert rows[f"{task}_ss"].derived["speedup"] == {"ratio": [f"{task}_ar.ms", f"{task}_ss.ms"]}
    assert rows["cnn_ss"].run.params_dict["num_speculations"] == 12
    assert rows["xsum_ss"].run.params_dict["num_speculations"] == 12
    assert rows["he_ss"].run.params_dict["num_speculations"] == 6
    assert rows["cnn_ar"].run.task_args_dict == {"shots": 1, "max_new_tokens": 512}
    assert rows["xsum_ar"].run.task_args_dict["shots"] == 0
    assert all(r.run.limit is None for r in spec.rows)
    assert rows["cnn_ss"].paper == {"rouge2": 0.078, "acc": 0.689, "toks": 127.9, "speedup": 1.86}
    assert rows["xsum_ss"].paper == {"rouge2": 0.073, "acc": 0.546, "toks": 104.7, "speedup": 1.54}
    assert rows["he_ss"].paper == {"rouge2": 0.042, "acc": 0.671, "toks": 122.8, "speedup": 1.83}
    assert spec.tolerances["ms"].skip and spec.tolerances["speedup"].rel == 0.15
    assert any("does not state" in n for n in spec.notes)
