"""`repro run` killed (SIGKILL) at ten random moments in a row, then finished: every example is recorded
exactly once and the records and metrics equal an uninterrupted run's."""
import json
import os
import sys
from pathlib import Path

import pytest

from suite.faults import kill_repeatedly
from suite.records import read_jsonl
from suite.spec import RunSpec

ROOT = Path(__file__).resolve().parents[2]
N = 150


def write_topv2(root: Path, n: int) -> Path:
    """A hand-made TOPv2 test file (read with check_sha256=false: it is not the official one)."""
    d = root / "topv2" / "TOPv2_Dataset"
    d.mkdir(parents=True, exist_ok=True)
    rows = ["domain\tutterance\tsemantic_parse"]
    rows += [f"weather\twhat is the weather in city {i}\t[IN:GET_WEATHER [SL:LOCATION city {i} ] ]" for i in range(n)]
    (d / "weather_test.tsv").write_text("\n".join(rows) + "\n")
    return root


def _cmd(runs: Path, data: Path, batch: int) -> list[str]:
    return [sys.executable, "-m", "suite.cli", "run", "--task", "topv2", "--system", "oracle", "--limit", str(N),
            "--task-arg", "domains=[weather]", "--task-arg", "check_sha256=false", "--param", "delay_s=0.02",
            "--param", f"batch_size={batch}", "--runs-dir", str(runs), "--data-root", str(data)]


def _spec(batch: int) -> RunSpec:
    return RunSpec.make("topv2", "oracle", "smoke", limit=N,
                        task_args={"domains": ["weather"], "check_sha256": False},
                        params={"delay_s": 0.02, "batch_size": batch})


@pytest.mark.slow
@pytest.mark.parametrize("batch", [1, 4])
def test_ten_random_kills_then_finish_equals_uninterrupted(tmp_path, batch):
    data = write_topv2(tmp_path / "data", N)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    records = tmp_path / "killed" / "smoke" / _spec(batch).dirname / "records.jsonl"

    def n_records() -> int:
        return len(records.read_bytes().splitlines()) if records.exists() else 0

    rep = kill_repeatedly(_cmd(tmp_path / "killed", data, batch), progress=n_records, kills=10, max_delay_s=0.2,
                          seed=batch, cwd=ROOT, env=env)
    assert rep.kills == 10 and not rep.finished_early, rep
    assert not (records.parent / "metrics.json").exists()
    assert 10 <= n_records() < N, "the kills must land mid-run"

    import subprocess
    for runs in ("killed", "clean"):
        out = subprocess.run(_cmd(tmp_path / runs, data, batch), cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
    clean = tmp_path / "clean" / "smoke" / _spec(batch).dirname
    got, want = read_jsonl(records), read_jsonl(clean / "records.jsonl")
    assert [r["id"] for r in got] == [f"weather_test:{i}" for i in range(N)]  # once each, in order
    assert got == want
    m_got = json.loads((records.parent / "metrics.json").read_text())
    m_want = json.loads((clean / "metrics.json").read_text())
    assert m_got["metrics"] == m_want["metrics"] and m_got["n_examples"] == N
