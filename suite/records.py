"""The one owner of the on-disk record formats: atomic JSON, appended JSONL, artifact records, run paths.

Every writer in the suite and in the reproductions goes through here, so there is one
schema per file kind and one place that decides what "complete" means:

* a JSON file is complete iff it exists (it is written to a temp file, fsynced, renamed);
* a JSONL file is a sequence of complete lines; a torn last line (a kill mid-write) is cut away;
* an artifact record (``<runs>/<profile>/artifacts/<name>/metrics.json``) carries a ``key`` that says
  what produced it, so a record made by other code or settings is recomputed, never reused.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import IO, Any, Iterable, Mapping

RECORDS_GLOB = "records*.jsonl"
"""``records.jsonl`` from a single process, ``records.rank<N>.jsonl`` from rank N of a distributed run."""


def runs_root(explicit: str | os.PathLike | None = None) -> Path:
    return Path(explicit or os.environ.get("REPRO_RUNS_DIR") or Path.cwd() / "runs")


def artifacts_dir(root: Path, profile: str) -> Path:
    return Path(root) / profile / "artifacts"


def artifact_record_path(root: Path, profile: str, name: str) -> Path:
    return artifacts_dir(root, profile) / name / "metrics.json"


def write_json_atomic(path: Path, obj: Any) -> None:
    """Readers see the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=str)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    """A JSON file, or a one-line error naming it (a hand-edited results file must not crash with a traceback)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); delete it or rerun with --force") from e


def append_record(fh: IO[str], record: Mapping[str, Any]) -> None:
    """One line per finished example, on disk before the next example starts (so a kill loses at most one)."""
    fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
    fh.flush()
    os.fsync(fh.fileno())


def read_jsonl(path: Path, *, repair: bool = True) -> list[dict[str, Any]]:
    """Records of a (possibly killed) writer; a torn last line is truncated away when ``repair``."""
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    good_end = raw.rfind(b"\n") + 1
    if good_end != len(raw) and repair:
        with open(path, "r+b") as f:
            f.truncate(good_end)
    records = []
    for lineno, line in enumerate(raw[:good_end].splitlines(), 1):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{lineno}: corrupt run record ({e.msg}); delete the run folder or rerun "
                             f"with --force") from e
        if not isinstance(rec, dict) or "id" not in rec:
            raise ValueError(f"{path}:{lineno}: run record without an 'id' field")
        records.append(rec)
    return records


def record_files(run_path: Path) -> list[Path]:
    return sorted(Path(run_path).glob(RECORDS_GLOB))


def read_run_records(run_path: Path) -> list[dict[str, Any]]:
    """All records of a run folder, every rank's file merged, in a stable order (by file, then line)."""
    out: list[dict[str, Any]] = []
    for f in record_files(run_path):
        out.extend(read_jsonl(f))
    return out


def check_unique(records: Iterable[Mapping[str, Any]], where: Path) -> None:
    seen: set[str] = set()
    for r in records:
        if r["id"] in seen:
            raise RuntimeError(f"{where}: example {r['id']!r} recorded twice; the run folder is corrupt")
        seen.add(r["id"])


def write_artifact_record(path: Path, *, key: str, metrics: Mapping[str, Mapping[str, Any]], n_examples: int,
                          data_files: list[Path], started: float, seeds: Mapping[str, int],
                          extra: Mapping[str, Any] | None = None) -> None:
    """Measurements that are not per-example runs (training cost, per-layer curves, lm-eval scores), stored in
    the run-record schema with provenance so tables read them like any run."""
    from suite.provenance import provenance

    write_json_atomic(path, {"key": key, "n_examples": n_examples, "metrics": dict(metrics),
                             "provenance": provenance(dict(seeds), data_files),
                             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "wall_s": time.perf_counter() - started, **dict(extra or {})})


def artifact_record_is_current(path: Path, key: str) -> bool:
    try:
        return read_json(path).get("key") == key
    except (FileNotFoundError, ValueError, AttributeError):
        return False
