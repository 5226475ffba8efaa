"""Execute one run spec into a run folder that survives being killed.

Layout of ``<runs_root>/<profile>/<task>__<system>__<hash>/``:
  spec.json        the frozen spec (written first)
  identity.json    the system's identity (checkpoint sha256, ...)
  records.jsonl    one line per finished example, appended, flushed and fsynced
  metrics.json     aggregates with bootstrap CIs + provenance; written last, atomically

A run is complete iff metrics.json exists. Resuming reads records.jsonl, drops a
torn last line, and skips examples already recorded, so nothing is counted twice.
"""
from __future__ import annotations

import io
import itertools
import json
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from suite.interfaces import Example, Generation, RunContext
from suite.progress import Progress
from suite.provenance import provenance
from suite.registry import SYSTEMS, TASKS
from suite.spec import RunSpec
from suite.stats import bootstrap_ci


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("REPRO_RUNS_DIR") or Path.cwd() / "runs")


def run_dir(spec: RunSpec, root: Path) -> Path:
    return root / spec.profile / spec.dirname


def write_json_atomic(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records of a (possibly killed) run; a torn last line is truncated away."""
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    if good_end != len(raw):
        with open(path, "r+b") as f:
            f.truncate(good_end)
    records = []
    for lineno, line in enumerate(raw[:good_end].splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: corrupt run record ({e}); delete the run folder or rerun with --force") from e
    return records


def load_metrics(spec: RunSpec, root: Path) -> dict[str, Any] | None:
    path = run_dir(spec, root) / "metrics.json"
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON ({e})") from e


def aggregate(records: list[dict[str, Any]], seed: int) -> dict[str, dict[str, Any]]:
    """Mean of every per-example score and statistic, with a bootstrap CI over examples."""
    out: dict[str, dict[str, Any]] = {}
    for section in ("scores", "stats"):
        names = sorted({k for r in records for k in r.get(section, {})})
        for name in names:
            vals = [float(r[section][name]) for r in records if name in r.get(section, {})]
            if not vals:
                continue
            ci = bootstrap_ci(vals, seed=seed)
            out[name] = {"value": sum(vals) / len(vals), "ci95": list(ci) if ci else None, "n": len(vals),
                         "kind": "score" if section == "scores" else "stat"}
    return out


@dataclass
class RunResult:
    spec: RunSpec
    path: Path
    metrics: dict[str, Any]
    reused: bool


def execute(spec: RunSpec, *, root: Path, data_root: Path | None, artifacts: Mapping[str, Path] | None = None,
            force: bool = False, device: str = "cpu", quiet: bool = False) -> RunResult:
    path = run_dir(spec, root)
    task = TASKS.get(spec.task)(**spec.task_args_dict)
    if force and path.exists():
        for child in path.iterdir():
            child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    spec_file = path / "spec.json"
    if not spec_file.exists():
        write_json_atomic(spec_file, spec.to_json())

    ctx = RunContext(profile=spec.profile, data_root=data_root, artifacts=dict(artifacts or {}), device=device,
                     seed=spec.seed)
    system = SYSTEMS.get(spec.system)(spec.params_dict, ctx)
    identity = json.loads(json.dumps(dict(system.identity()), sort_keys=True, default=str))
    id_file = path / "identity.json"
    if id_file.exists() and json.loads(id_file.read_text()) != identity:
        # The checkpoint behind an alias changed: old records describe another model.
        for child in path.iterdir():
            if child.name != "spec.json":
                child.unlink()
    if not id_file.exists():
        write_json_atomic(id_file, identity)

    metrics_file = path / "metrics.json"
    if metrics_file.exists():
        return RunResult(spec, path, json.loads(metrics_file.read_text()), reused=True)

    records_file = path / "records.jsonl"
    done = {r["id"] for r in read_records(records_file)}
    examples = list(itertools.islice(task.examples(spec.split, data_root), spec.limit))
    n_samples = getattr(task, "samples_per_example", 1)
    bar = Progress(f"{spec.task}|{spec.system}", len(examples), done=len(done),
                   stream=io.StringIO() if quiet else sys.stderr)
    random.seed(spec.seed)
    with open(records_file, "a", encoding="utf-8") as out:
        for ex in examples:
            if ex.id in done:
                continue
            rec = _run_one(task, system, ex, n_samples)
            out.write(json.dumps(rec, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
            done.add(ex.id)
            bar.update()
    bar.close()

    records = read_records(records_file)
    ids = [r["id"] for r in records]
    if len(ids) != len(set(ids)):
        raise RuntimeError(f"{records_file}: duplicate example ids; the run folder is corrupt")
    metrics = {
        "spec": spec.to_json(),
        "identity": identity,
        "n_examples": len(records),
        "metrics": aggregate(records, spec.seed),
        "main_metric": task.main_metric,
        "task_settings": {k: v for k, v in vars(task).items() if isinstance(v, (int, float, str, tuple, bool))},
        "provenance": provenance({"spec": spec.seed}, task.data_files(spec.split, data_root)),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_json_atomic(metrics_file, metrics)
    return RunResult(spec, path, metrics, reused=False)


def _run_one(task: Any, system: Any, ex: Example, n_samples: int) -> dict[str, Any]:
    request = task.request(ex)
    outputs: list[Generation] = [system.generate(request, ex) for _ in range(n_samples)]
    scores = task.score_samples(ex, outputs) if n_samples > 1 else task.score(ex, outputs[0])
    stats: dict[str, float] = {}
    for key in sorted({k for o in outputs for k in o.stats}):
        vals = [o.stats[key] for o in outputs if key in o.stats]
        stats[key] = sum(vals) / len(vals)
    return {"id": ex.id, "outputs": [o.text for o in outputs], "scores": scores, "stats": stats}
