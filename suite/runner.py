"""Execute one run spec into a run folder that survives being killed.

Layout of ``<runs_root>/<profile>/<task>__<system>__<hash>/``:
  spec.json          the frozen spec (written first)
  identity.json      the system's identity (checkpoint sha256, ...)
  records.jsonl      one line per finished example, appended, flushed and fsynced
                     (``records.rank<N>.jsonl`` per rank under torchrun)
  metrics.json       aggregates with CIs + device + provenance; written last, atomically

A run is complete iff metrics.json exists. Resuming reads every records file, drops a
torn last line, and skips examples already recorded, so nothing is counted twice.

Faults this is built for:
* killed at any point (SIGKILL): batches have fixed boundaries and a partly recorded batch is rerun
  whole (only its missing examples are appended), with the RNGs seeded per batch, so the resumed run's
  records equal an uninterrupted run's;
* two writers: ``.lock`` in the run folder (``suite.locks``; rank 0 takes it under torchrun and tells
  the other ranks) makes the second process fail at once, naming the holder;
* a finished run is recognised before its system is built when the system class offers
  ``cheap_identity(params, ctx)`` (e.g. a checkpoint sha256 cached by path, size and mtime), so a
  reused 7B run costs a ``stat``, not loading and hashing 13 GB;
* a hand-edited ``metrics.json`` fails with the file and field (``load_metrics``).
"""
from __future__ import annotations

import hashlib
import io
import itertools
import json
import random
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from suite import distributed
from suite.aggregate import summarize
from suite.devices import device_info, resolve_device, resolve_dtype
from suite.interfaces import Example, RunContext
from suite.locks import LockBusy, exclusive, is_lock_file
from suite.progress import Progress
from suite.provenance import provenance
from suite.records import (
    append_record,
    check_unique,
    read_json,
    read_run_records,
    record_files,
    runs_root,
    write_json_atomic,
)
from suite.registry import PROFILE_DTYPE, SYSTEMS, TASKS
from suite.spec import RunSpec

__all__ = ["execute", "check_metrics", "load_metrics", "run_dir", "runs_root", "RunResult"]

RUNNER_PARAMS = ("batch_size",)
"""System params the runner consumes itself (they stay in the spec, since batching can change numerics)."""


def run_dir(spec: RunSpec, root: Path) -> Path:
    return Path(root) / spec.profile / spec.dirname


def check_metrics(m: Any, path: Path) -> dict[str, Any]:
    """A results file as the tables read it, or a one-line error naming the file and the bad field."""
    if not isinstance(m, dict):
        raise ValueError(f"{path}: not a results file (a JSON object with 'metrics' expected, got "
                         f"{type(m).__name__}); delete it or rerun with --force")
    metrics = m.get("metrics")
    if not isinstance(metrics, dict):
        raise ValueError(f"{path}: field 'metrics' must be an object of metric -> {{value, ...}}; delete the "
                         f"file or rerun with --force")
    for name, entry in metrics.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            raise ValueError(f"{path}: field 'metrics.{name}.value' is {value!r}, not a number; delete the file "
                             f"or rerun with --force")
        ci = entry.get("ci95")
        if ci is not None and not (isinstance(ci, list) and len(ci) == 2
                                   and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in ci)):
            raise ValueError(f"{path}: field 'metrics.{name}.ci95' is {ci!r}, not [low, high]")
    return m


def load_metrics(spec: RunSpec, root: Path) -> dict[str, Any] | None:
    path = run_dir(spec, root) / "metrics.json"
    return check_metrics(read_json(path), path) if path.exists() else None


@dataclass
class RunResult:
    spec: RunSpec
    path: Path
    metrics: dict[str, Any]
    reused: bool


def _normalized(identity: Mapping[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(dict(identity), sort_keys=True, default=str))


def execute(spec: RunSpec, *, root: Path, data_root: Path | None, artifacts: Mapping[str, Path] | None = None,
            force: bool = False, device: str | None = "auto", dtype: str | None = "auto",
            quiet: bool = False) -> RunResult:
    w = distributed.init_if_needed()
    path = run_dir(spec, root)
    task = TASKS.get(spec.task)(**spec.task_args_dict)
    system_cls = SYSTEMS.get(spec.system)
    dev = resolve_device(device)
    ctx = RunContext(profile=spec.profile, data_root=data_root, artifacts=dict(artifacts or {}), device=dev,
                     dtype=resolve_dtype(dtype, dev, PROFILE_DTYPE.get(spec.profile, "auto")), seed=spec.seed)
    params = {k: v for k, v in spec.params_dict.items() if k not in RUNNER_PARAMS}
    with _run_lock(path, w):
        if w.is_main:
            _prepare_folder(path, spec, force)
        _barrier(w)
        stored = None if force else _reusable(path, system_cls, params, ctx)
        if stored is not None:
            return RunResult(spec, path, stored, reused=True)
        # bad data fails here, before a (possibly 13 GB) model is loaded
        examples = None if (path / "metrics.json").exists() else _examples(task, spec, data_root)
        return _execute_locked(spec, task, system_cls(params, ctx), ctx, path, data_root, w, quiet, examples)


def _examples(task: Any, spec: RunSpec, data_root: Path | None) -> list[Example]:
    return list(itertools.islice(task.examples(spec.split, data_root), spec.limit))


def _reusable(path: Path, system_cls: Any, params: Mapping[str, Any], ctx: RunContext) -> dict[str, Any] | None:
    """The stored results when the run is finished and its system is cheaply known to be unchanged."""
    metrics_file = path / "metrics.json"
    cheap = getattr(system_cls, "cheap_identity", None)
    if cheap is None or not metrics_file.exists():
        return None
    stored = check_metrics(read_json(metrics_file), metrics_file)
    identity = cheap(params, ctx)
    if identity is not None and _normalized(identity) == stored.get("identity"):
        return stored
    return None


def _execute_locked(spec: RunSpec, task: Any, system: Any, ctx: RunContext, path: Path, data_root: Path | None,
                    w: distributed.World, quiet: bool, examples: list[Example] | None) -> RunResult:
    identity = _normalized(system.identity())
    if w.is_main:
        _check_identity(path, identity)
    _barrier(w)

    metrics_file = path / "metrics.json"
    if metrics_file.exists():
        return RunResult(spec, path, check_metrics(read_json(metrics_file), metrics_file), reused=True)

    if examples is None:
        examples = _examples(task, spec, data_root)
    done = {r["id"] for r in read_run_records(path)}
    _barrier(w)  # every rank has read what is done before any rank appends
    mine = [ex for i, ex in enumerate(examples) if i % w.size == w.rank]
    _run_examples(task, system, spec, mine, done, path / w.records_name(), quiet)
    _barrier(w)

    if w.is_main:
        metrics = _finish(task, spec, identity, ctx, examples, path, data_root)
        write_json_atomic(metrics_file, metrics)
    _barrier(w)
    return RunResult(spec, path, read_json(metrics_file), reused=False)


@contextmanager
def _run_lock(path: Path, w: distributed.World) -> Iterator[None]:
    """One writer per run folder. Under torchrun rank 0 holds the lock for the whole job (the ranks are one
    writer, each appending its own records file) and tells every rank whether it got it, so a refused job
    fails on all ranks instead of leaving them waiting at a barrier."""
    with ExitStack() as stack:
        refusal: LockBusy | None = None
        if w.is_main:
            try:
                stack.enter_context(exclusive(path, "this run"))
            except LockBusy as e:
                refusal = e
        if w.size > 1 and not _all_ranks_agree(refusal is None):
            raise refusal or LockBusy(f"{path}: rank 0 could not lock this run folder (see rank 0's message)")
        if refusal is not None:
            raise refusal
        yield


def _barrier(w: distributed.World) -> None:
    if w.size > 1:  # a single process never needs torch.distributed (nor its import time)
        distributed.barrier()


def _all_ranks_agree(ok: bool) -> bool:
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return ok
    flag = torch.tensor([1 if ok else 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _prepare_folder(path: Path, spec: RunSpec, force: bool) -> None:
    path.mkdir(parents=True, exist_ok=True)
    if force:
        for child in path.iterdir():
            if not is_lock_file(child):  # deleting a held lock file would let a second writer in
                child.unlink()
    if not (path / "spec.json").exists():
        write_json_atomic(path / "spec.json", spec.to_json())


def _check_identity(path: Path, identity: Mapping[str, Any]) -> None:
    id_file = path / "identity.json"
    if id_file.exists() and read_json(id_file) != identity:
        # The checkpoint behind an alias changed: old records describe another model.
        for child in path.iterdir():
            if child.name != "spec.json" and not is_lock_file(child):
                child.unlink()
    if not id_file.exists():
        write_json_atomic(id_file, identity)


def _batches(items: Sequence[Example], size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _seed_batch(seed: int, first_id: str) -> None:
    """RNG state as a function of (seed, batch), so a resumed run draws what an uninterrupted one drew."""
    digest = hashlib.sha256(f"{seed}:{first_id}".encode()).digest()
    random.seed(digest)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _run_examples(task: Any, system: Any, spec: RunSpec, examples: list[Example], done: set[str], out_path: Path,
                  quiet: bool) -> None:
    batch_size = max(1, int(spec.params_dict.get("batch_size", 1)))
    # A task that scores in parallel (sandboxed programs) gets a chunk of whole batches at once; the chunk is
    # a multiple of the batch size, so batch composition (and so every output) does not depend on it.
    per_chunk = max(1, -(-int(getattr(task, "score_chunk", 1)) // batch_size))
    n_samples = int(getattr(task, "samples_per_example", 1))
    n_done = sum(ex.id in done for ex in examples)
    bar = Progress(f"{spec.task}|{spec.system}", len(examples), done=n_done,
                   stream=io.StringIO() if quiet else sys.stderr)
    with open(out_path, "a", encoding="utf-8") as out:
        # Batch boundaries are fixed by position, and a partly recorded batch (a kill between two appends)
        # is rerun whole, so every output comes from the same batch composition as in an uninterrupted run.
        for chunk in _batches(examples, batch_size * per_chunk):
            batches = [b for b in _batches(chunk, batch_size) if not all(ex.id in done for ex in b)]
            if not batches:
                continue
            for rec in _run_chunk(task, system, spec.seed, batches, n_samples):
                if rec["id"] not in done:
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


def _predict_batch(task: Any, system: Any, seed: int, batch: list[Example], n_samples: int) -> list[list[Any]]:
    """Outputs per example (``n_samples`` each), with the RNG seeded by the batch, not by what ran before."""
    _seed_batch(seed, batch[0].id)
    requests = [task.request(ex) for ex in batch]
    samples = [_predict(system, requests, batch) for _ in range(n_samples)]
    return [[s[i] for s in samples] for i in range(len(batch))]


def _run_chunk(task: Any, system: Any, seed: int, batches: list[list[Example]], n_samples: int) -> list[dict[str, Any]]:
    batch = [ex for b in batches for ex in b]
    per_example = [outs for b in batches for outs in _predict_batch(task, system, seed, b, n_samples)]
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
        "task_settings": {k: v for k, v in vars(task).items()
                          if not k.startswith("_") and isinstance(v, (int, float, str, tuple, bool))},
        "device": info,
        "world_size": distributed.world().size,
        "record_files": [p.name for p in record_files(path)],
        "provenance": {**provenance({"spec": spec.seed}, task.data_files(spec.split, data_root)), "device": info},
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
