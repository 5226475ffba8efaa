"""A run sharded by torchrun over 2 CPU processes (gloo) merges into the single-process run.

The runner gives each rank every 2nd example and rank 0 merges ``records.rank<N>.jsonl``; the merged
metrics (values, n, bootstrap CIs) must be exactly those of one process on the same spec.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests.fixtures

from suite.records import read_run_records  # noqa: E402
from suite.runner import execute  # noqa: E402
from suite.spec import RunSpec  # noqa: E402
from tests.fixtures.imagenet import make_imagefolder, write_class_index  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _torchrun() -> list[str]:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.is_file():
        return [str(exe)]
    if shutil.which("torchrun"):
        return ["torchrun"]
    pytest.skip("torchrun is not installed next to this Python")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(runs: Path, args: list[str], timeout_s: float = 240) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _torchrun() + ["--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(_free_port()),
                         "-m", "suite.cli", "run", "--runs-dir", str(runs), "--device", "cpu", *args]
    # own session: on a hang the whole group (torchrun and both workers) is killed, not just torchrun
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout_s}s: {' '.join(cmd)}")
    assert proc.returncode == 0, err[-3000:]


def _same_run(spec: RunSpec, dist_root: Path, single_root: Path, data_root: Path | None) -> None:
    single = execute(spec, root=single_root, data_root=data_root, quiet=True)
    merged_dir = dist_root / spec.profile / spec.dirname
    merged = json.loads((merged_dir / "metrics.json").read_text())
    assert merged["world_size"] == 2
    assert merged["record_files"] == ["records.rank0.jsonl", "records.rank1.jsonl"]
    assert merged["n_examples"] == single.metrics["n_examples"]
    assert merged["metrics"] == single.metrics["metrics"]
    ids = sorted(r["id"] for r in read_run_records(merged_dir))
    assert ids == sorted(r["id"] for r in read_run_records(single.path))


def _imagenet_fixture(tmp_path: Path) -> dict:
    root = make_imagefolder(tmp_path / "inet", classes=(3, 500, 998), per_class=3)
    index = write_class_index(tmp_path / "meta" / "imagenet_class_index.json")
    return {"root": str(root), "class_index": str(index)}


def test_imagenet_oracle_torchrun_merges_to_the_single_process_run(tmp_path):
    args = _imagenet_fixture(tmp_path)
    _launch(tmp_path / "dist", ["--task", "imagenet", "--system", "oracle", "--split", "val", "--param",
                                "batch_size=2"] + [f"--task-arg={k}={v}" for k, v in args.items()])
    spec = RunSpec.make("imagenet", "oracle", "smoke", split="val", task_args=args, params={"batch_size": 2})
    _same_run(spec, tmp_path / "dist", tmp_path / "single", None)


@pytest.mark.slow
def test_humaneval_oracle_torchrun_merges_to_the_single_process_run(tmp_path):
    _launch(tmp_path / "dist", ["--task", "humaneval", "--system", "oracle", "--limit", "7"])
    spec = RunSpec.make("humaneval", "oracle", "smoke", limit=7)
    _same_run(spec, tmp_path / "dist", tmp_path / "single", None)
