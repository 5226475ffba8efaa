"""A run killed mid-way resumes and counts every example exactly once; a finished run is reused without
building its system; records of a changed checkpoint are discarded."""
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from suite.interfaces import Generation, OneAtATime
from suite.records import read_jsonl as read_records
from suite.registry import SYSTEMS
from suite.runner import execute
from suite.spec import RunSpec

LIMIT = 12


def _cmd(runs: Path) -> list[str]:
    return [sys.executable, "-m", "suite.cli", "run", "--task", "humaneval", "--system", "oracle", "--limit",
            str(LIMIT), "--param", "delay_s=0.3", "--task-arg", "score_chunk=1", "--runs-dir", str(runs)]


def test_real_kill_then_resume(tmp_path):
    proc = subprocess.Popen(_cmd(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    spec = RunSpec.make("humaneval", "oracle", "smoke", limit=LIMIT, params={"delay_s": 0.3},
                        task_args={"score_chunk": 1})  # records land one by one, so the kill can fall mid-run
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


# ----------------------------------------------------------------------------- reuse and stale records


def register_for_test(monkeypatch, registry, name, target) -> None:
    """A registration undone after the test, so other tests see only the built-ins."""
    registry.names()  # the entry points first: only the temporary name changes
    monkeypatch.setitem(registry._targets, name, target)
    monkeypatch.setitem(registry._sources, name, "test")


class _FileModel(OneAtATime):
    """A 'model' whose weights are a text file: it answers with the file's content (the expected parse when
    the file holds 'good'), and its identity is the file's content, as a checkpoint sha256 would be."""

    built = 0
    fail_on_build = False

    def __init__(self, params, ctx):
        if type(self).fail_on_build:
            raise AssertionError("the system was built although the finished run could be reused")
        type(self).built += 1
        self.weights = Path(params["model"]).read_text()

    @classmethod
    def cheap_identity(cls, params, ctx):
        return {"weights": Path(params["model"]).read_text()}

    def identity(self):
        return {"weights": self.weights}

    def generate(self, request, example):
        return Generation(example.data["canonical_solution"] if self.weights == "good" else "    return None\n")


@pytest.fixture
def file_model(tmp_path, monkeypatch):
    name = f"file-model-{uuid.uuid4().hex[:8]}"
    cls = type(name, (_FileModel,), {"built": 0, "fail_on_build": False})
    register_for_test(monkeypatch, SYSTEMS, name, cls)
    weights = tmp_path / "weights.txt"
    weights.write_text("good")
    return name, cls, weights


def test_finished_run_is_reused_without_building_the_system(tmp_path, file_model):
    name, cls, weights = file_model
    spec = RunSpec.make("humaneval", name, "smoke", limit=2, params={"model": str(weights)})
    first = execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)
    assert not first.reused and cls.built == 1
    cls.fail_on_build = True  # e.g. a 13 GB model: loading it just to learn that nothing changed is not allowed
    again = execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)
    assert again.reused and again.metrics == first.metrics
    weights.write_text("bad")  # the checkpoint behind the alias changed: now the system must be built
    with pytest.raises(AssertionError, match="was built"):
        execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)


def test_stale_records_are_discarded_when_the_checkpoint_changes(tmp_path, file_model):
    name, cls, weights = file_model
    spec = RunSpec.make("humaneval", name, "smoke", limit=3, params={"model": str(weights)})
    first = execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)
    assert first.metrics["metrics"]["pass@1"]["value"] == 1.0
    weights.write_text("bad")
    second = execute(spec, root=tmp_path / "runs", data_root=None, quiet=True)
    assert not second.reused and second.path == first.path
    assert second.metrics["metrics"]["pass@1"]["value"] == 0.0
    assert second.metrics["identity"] == {"weights": "bad"}
    recs = read_records(second.path / "records.jsonl")
    assert [r["id"] for r in recs] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert all(r["outputs"] == ["    return None\n"] for r in recs), "records of the old checkpoint survived"


def test_partly_recorded_batch_is_rerun_whole(tmp_path, monkeypatch):
    """A kill between two appends of one batch: the resumed run recomputes the batch as a whole (outputs may
    depend on the batch's composition) and appends only what is missing."""
    from suite import runner

    spec = RunSpec.make("humaneval", "oracle", "smoke", limit=6, params={"batch_size": 3})
    seen: list[list[str]] = []
    real = runner._predict_batch

    def spy(task, system, seed, batch, n):
        seen.append([e.id for e in batch])
        return real(task, system, seed, batch, n)

    path = runner.run_dir(spec, tmp_path)
    path.mkdir(parents=True)
    first = [f"HumanEval/{i}" for i in range(4)]  # batch 1 complete, batch 2 holds one of its three
    with open(path / "records.jsonl", "w") as f:
        for i in first:
            f.write(json.dumps({"id": i, "outputs": ["x"], "scores": {"pass@1": 1.0, "rouge2": 0.0}, "stats": {}})
                    + "\n")
    monkeypatch.setattr(runner, "_predict_batch", spy)
    res = execute(spec, root=tmp_path, data_root=None, quiet=True)
    assert seen == [["HumanEval/3", "HumanEval/4", "HumanEval/5"]]
    assert [r["id"] for r in read_records(res.path / "records.jsonl")] == [f"HumanEval/{i}" for i in range(6)]
