"""benchmarks/decoding.py runs end to end on a tiny random model (it is not a timing test: it only checks that
every system it compares produces the same greedy tokens and that the ratio lines are printed)."""
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_decoding", ROOT / "benchmarks" / "decoding.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_runs_and_systems_agree(capsys):
    pytest.importorskip("transformers")
    _bench().main(["--threads", "1", "--layers", "3", "--dim", "64", "--vocab", "128", "--prompts", "2",
                   "--prompt-len", "5", "--max-new-tokens", "8", "--exit-layer", "1", "--num-speculations", "3",
                   "--batch", "2", "--clock", "cpu"])
    out = capsys.readouterr().out
    assert "cpu:" in out.splitlines()[0]
    rows = [line for line in out.splitlines() if line.startswith(("ours", "transformers"))]
    assert len(rows) == 6 and all(line.rstrip().endswith("2/2") for line in rows), rows
    assert "ours AR / transformers AR" in out and "ours self-spec / ours AR" in out
    assert "batched AR: batch 1" in out and "outputs == batch 1: 2/2" in out
