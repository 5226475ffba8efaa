"""Execute one run spec into a run folder that survives being killed.

Layout of ``<runs_root>/<profile>/<task>__<system>__<hash>/``:
  spec.json          the frozen spec (written first)
  identity.json      the system's identity (checkpoint sha256, ...)
  records.jsonl      one line per finished example, appended, flushed and fsynced
                     (``records.rank<N>.jsonl`` per rank under torchrun)
  metrics.json       aggregates with CIs + device + provenance; written last, atomically

A run is complete iff metrics.json exists. Resuming reads every records file, drops a
torn last line, and skips examples already recorded, so nothing is counted twice.
"""
from __future__ import annotations

import io
import itertools
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from suite import distributed
from suite.aggregate import summarize
from suite.devices import device_info, resolve_device, resolve_dtype
from suite.interfaces import Example, RunContext
from suite.progress import Progress
from suite.provenance import provenance
from suite.records import (append_record, check_unique, read_json, read_run_records, record_files, runs_root,
                           write_json_atomic)
from suite.registry import SYSTEMS, TASKS
from suite.spec import RunSpec

__all__ = ["execute", "load_metrics", "run_dir", "runs_root", "RunResult"]

RUNNER_PARAMS = ("batch_size",)
"""System params the runner consumes itself (they stay in the spec, since batching can change numerics)."""


def run_dir(spec: RunSpec, root: Path) -> Path:
    return Path(root) / spec.profile / spec.dirname


def load_metrics(spec: RunSpec, root: Path) -> dict[str, Any] | None:
    path = run_dir(spec, root) / "metrics.json"
    return read_json(path) if path.exists() else None


@dataclass
class RunResult:
    spec: RunSpec
    path: Path
    metrics: dict[str, Any]
    reused: bool


def execute(spec: RunSpec, *, root: Path, data_root: Path | None, artifacts: Mapping[str, Path] | None = None,
            force: bool = False, device: str | None = "auto", dtype: str | None = "auto",
            quiet: bool = False) -> RunResult:
    w = distributed.init_if_needed()
    path = run_dir(spec, root)
    task = TASKS.get(spec.task)(**spec.task_args_dict)
    if w.is_main:
        _prepare_folder(path, spec, force)
    distributed.barrier()

    dev = resolve_device(device)
    ctx = RunContext(profile=spec.profile, data_root=data_root, artifacts=dict(artifacts or {}), device=dev,
                     dtype=resolve_dtype(dtype, dev), seed=spec.seed)
    params = {k: v for k, v in spec.params_dict.items() if k not in RUNNER_PARAMS}
    system = SYSTEMS.get(spec.system)(params, ctx)
    identity = json.loads(json.dumps(dict(system.identity()), sort_keys=True, default=str))
    if w.is_main:
        _check_identity(path, identity)
    distributed.barrier()

    metrics_file = path / "metrics.json"
    if metrics_file.exists():
        return RunResult(spec, path, read_json(metrics_file), reused=True)

    examples = list(itertools.islice(task.examples(spec.split, data_root), spec.limit))
    done = {r["id"] for r in read_run_records(path)}
    distributed.barrier()  # every rank has read what is done before any rank appends
    mine = [ex for i, ex in enumerate(examples) if i % w.size == w.rank]
    _run_examples(task, system, spec, mine, done, path / w.records_name(), quiet)
    distributed.barrier()

    if w.is_main:
        metrics = _finish(task, spec, identity, ctx, examples, path, data_root)
        write_json_atomic(metrics_file, metrics)
    distributed.barrier()
    return RunResult(spec, path, read_json(metrics_file), reused=False)


def _prepare_folder(path: Path, spec: RunSpec, force: bool) -> None:
    if force and path.exists():
        for child in path.iterdir():
            child.unlink()
    path.mkdir(parents=True, exist_ok=True)
    if not (path / "spec.json").exists():
        write_json_atomic(path / "spec.json", spec.to_json())


def _check_identity(path: Path, identity: Mapping[str, Any]) -> None:
    id_file = path / "identity.json"
    if id_file.exists() and read_json(id_file) != identity:
        # The checkpoint behind an alias changed: old records describe another model.
        for child in path.iterdir():
            if child.name != "spec.json":
                child.unlink()
    if not id_file.exists():
        write_json_atomic(id_file, identity)


def _batches(items: Sequence[Example], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _run_examples(task: Any, system: Any, spec: RunSpec, examples: list[Example], done: set[str], out_path: Path,
                  quiet: bool) -> None:
    todo = [ex for ex in examples if ex.id not in done]
    batch_size = max(1, int(spec.params_dict.get("batch_size", 1)))
    n_samples = int(getattr(task, "samples_per_example", 1))
    bar = Progress(f"{spec.task}|{spec.system}", len(examples), done=len(examples) - len(todo),
                   stream=io.StringIO() if quiet else sys.stderr)
    random.seed(spec.seed)
    with open(out_path, "a", encoding="utf-8") as out:
        for batch in _batches(todo, batch_size):
            for rec in _run_batch(task, system, batch, n_samples):
                append_record(out, rec)
                bar.update()
    bar.close()


def _predict(system: Any, requests: list[Any], examples: list[Example]) -> list[Any]:
    if hasattr(system, "predict"):
        outs = list(system.predict(requests, examples))
    else:  # a system written against the one-at-a-time contract
        outs = [system.generate(r, e) for r, e in zip(requests, examples)]
    if len(outs) != len(requests):
        raise RuntimeError(f"system returned {len(outs)} outputs for {len(requests)} requests")
    return outs


def _run_batch(task: Any, system: Any, batch: list[Example], n_samples: int) -> list[dict[str, Any]]:
    requests = [task.request(ex) for ex in batch]
    samples = [_predict(system, requests, batch) for _ in range(n_samples)]
    per_example = [[s[i] for s in samples] for i in range(len(batch))]
    scores = _score(task, batch, per_example, n_samples)
    evidence = getattr(task, "evidence", None)
    records = []
    for ex, outs, sc in zip(batch, per_example, scores):
        stats: dict[str, float] = {}
        for key in sorted({k for o in outs for k in getattr(o, "stats", {})}):
            vals = [o.stats[key] for o in outs if key in o.stats]
            stats[key] = sum(vals) / len(vals)
        stored = [evidence(ex, o) if evidence else o.to_record() for o in outs]
        records.append({"id": ex.id, "outputs": stored, "scores": sc, "stats": stats})
    return records


def _score(task: Any, batch: list[Example], outputs: list[list[Any]], n_samples: int) -> list[dict[str, float]]:
    if hasattr(task, "score_batch"):  # e.g. sandboxed programs run in parallel
        return list(task.score_batch(batch, outputs))
    if n_samples > 1:
        return [task.score_samples(ex, outs) for ex, outs in zip(batch, outputs)]
    return [task.score(ex, outs[0]) for ex, outs in zip(batch, outputs)]


def _finish(task: Any, spec: RunSpec, identity: Mapping[str, Any], ctx: RunContext, examples: list[Example],
            path: Path, data_root: Path | None) -> dict[str, Any]:
    order = {ex.id: i for i, ex in enumerate(examples)}
    records = [r for r in read_run_records(path) if r["id"] in order]
    check_unique(records, path)
    missing = len(examples) - len(records)
    if missing:
        raise RuntimeError(f"{path}: {missing} of {len(examples)} examples have no record after the run")
    records.sort(key=lambda r: order[r["id"]])  # the merged run is the single-process run, in official order
    info = device_info(ctx.device, ctx.dtype).to_json()
    return {
        "spec": spec.to_json(),
        "identity": dict(identity),
        "n_examples": len(records),
        "metrics": summarize(records, task, spec.seed),
        "main_metric": task.main_metric,
        "task_settings": {k: v for k, v in vars(task).items() if isinstance(v, (int, float, str, tuple, bool))},
        "device": info,
        "world_size": distributed.world().size,
        "record_files": [p.name for p in record_files(path)],
        "provenance": {**provenance({"spec": spec.seed}, task.data_files(spec.split, data_root)), "device": info},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
