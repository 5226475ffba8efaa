"""Two writers on one run folder, report folder or artifacts folder: the second fails at once, naming the first."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from suite.cli import main
from suite.locks import LOCK_NAME, LockBusy, exclusive, read_holder

ROOT = Path(__file__).resolve().parents[2]

HOLD = "import sys, time; from suite.locks import exclusive\nwith exclusive(sys.argv[1], 'x'):\n" \
       "    print('held', flush=True); time.sleep(60)\n"


def _holder(folder: Path) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.readline().strip() == "held"
    return p


def test_second_writer_fails_at_once_naming_the_holder(tmp_path):
    p = _holder(tmp_path)
    try:
        t0 = time.time()
        with pytest.raises(LockBusy) as e:
            with exclusive(tmp_path, "this run"):
                pass
        assert time.time() - t0 < 2, "must fail at once, not wait"
        msg = str(e.value)
        assert f"pid {p.pid}" in msg and os.uname().nodename in msg and "since" in msg and "-c" in msg
        assert read_holder(tmp_path / LOCK_NAME).pid == p.pid
    finally:
        p.kill()
        p.wait()
    with exclusive(tmp_path, "this run"):  # SIGKILL released it: no stale lock after a crash
        assert read_holder(tmp_path / LOCK_NAME).pid == os.getpid()


def test_reentrant_within_a_process(tmp_path):
    with exclusive(tmp_path, "a"):
        with exclusive(tmp_path, "a"):
            pass
        p = subprocess.run([sys.executable, "-c", HOLD, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
        assert p.returncode != 0 and "LockBusy" in p.stderr  # still held after the inner block
    with exclusive(tmp_path, "a"):
        pass


def _run_args(runs: Path) -> list[str]:
    return ["run", "--task", "humaneval", "--system", "oracle", "--limit", "20", "--param", "delay_s=0.5",
            "--runs-dir", str(runs)]


def test_two_repro_runs_on_one_spec(tmp_path, capsys):
    first = subprocess.Popen([sys.executable, "-m", "suite.cli", *_run_args(tmp_path)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(tmp_path.glob("smoke/*/records.jsonl")):
            time.sleep(0.05)
        records = next(tmp_path.glob("smoke/*/records.jsonl"))
        capsys.readouterr()
        assert main(_run_args(tmp_path)) == 3
        err = capsys.readouterr().err
        assert err.startswith("repro: busy: ") and f"pid {first.pid}" in err and records.parent.name in err
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    ids = [line for line in records.read_text().splitlines() if line.strip()]
    assert len(ids) == len(set(ids)), "the refused process must not have written"
    assert not (records.parent / "metrics.json").exists()


def test_force_keeps_the_lock_file(tmp_path):
    from suite.runner import execute
    from suite.spec import RunSpec

    spec = RunSpec.make("humaneval", "oracle", "smoke", limit=1)
    res = execute(spec, root=tmp_path, data_root=None, quiet=True)
    lock = res.path / LOCK_NAME
    inode = lock.stat().st_ino
    execute(spec, root=tmp_path, data_root=None, force=True, quiet=True)
    assert lock.stat().st_ino == inode, "deleting a lock file lets a second writer take a new one"


def test_report_and_artifacts_folders_are_locked(tmp_path, capsys, sanity_data):
    out = tmp_path / "reports"
    p = _holder(out / "sanity" / "smoke")
    try:
        capsys.readouterr()
        rc = main(["report", "sanity", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 3 and f"pid {p.pid}" in err and "report" in err
    finally:
        p.kill()
        p.wait()
    p = _holder(tmp_path / "runs" / "smoke" / "artifacts")
    try:
        rc = main(["reproduce", "sanity", "--runs-dir", str(tmp_path / "runs"), "--out", str(out)])
        err = capsys.readouterr().err
        assert rc == 3 and f"pid {p.pid}" in err and "prepared models" in err
    finally:
        p.kill()
        p.wait()
