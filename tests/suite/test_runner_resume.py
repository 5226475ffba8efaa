"""A run killed mid-way resumes and counts every example exactly once."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from suite.records import read_jsonl as read_records
from suite.runner import execute
from suite.spec import RunSpec

LIMIT = 12


def _cmd(runs: Path) -> list[str]:
    return [sys.executable, "-m", "suite.cli", "run", "--task", "humaneval", "--system", "oracle", "--limit",
            str(LIMIT), "--param", "delay_s=0.3", "--runs-dir", str(runs)]


def test_real_kill_then_resume(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    spec = RunSpec.make("humaneval", "oracle", "smoke", limit=LIMIT, params={"delay_s": 0.3})
    records = tmp_path / "smoke" / spec.dirname / "records.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline:
        if records.exists() and len(records.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(read_records(records))
    assert 3 <= done_before < LIMIT, "the kill must land mid-run"
    assert not (records.parent / "metrics.json").exists()
    with open(records, "a") as f:  # a torn write, as if killed inside write()
        f.write('{"id": "HumanEval/99", "outp')

    out = subprocess.run(_cmd(tmp_path), capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    ids = [r["id"] for r in read_records(records)]
    assert ids == [f"HumanEval/{i}" for i in range(LIMIT)]
    metrics = json.loads((records.parent / "metrics.json").read_text())
    assert metrics["n_examples"] == LIMIT and metrics["metrics"]["pass@1"]["value"] == 1.0
    assert metrics["metrics"]["pass@1"]["n"] == LIMIT


def test_finished_run_is_reused_and_force_recomputes(tmp_path):
    spec = RunSpec.make("humaneval", "oracle", "smoke", limit=2)
    first = execute(spec, root=tmp_path, data_root=None, quiet=True)
    again = execute(spec, root=tmp_path, data_root=None, quiet=True)
    assert not first.reused and again.reused
    forced = execute(spec, root=tmp_path, data_root=None, force=True, quiet=True)
    assert not forced.reused
    assert len(read_records(forced.path / "records.jsonl")) == 2
    prov = forced.metrics["provenance"]
    assert set(prov) >= {"git", "packages", "hardware", "seeds", "data_files"}
    assert any(p.endswith("HumanEval.jsonl.gz") for p in prov["data_files"])
