"""What a reproduction package provides to the suite: its tables and how to prepare its models."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from suite.compare import TableResult
from suite.tables import TableSpec, load_table


@dataclass(frozen=True)
class PrepareContext:
    profile: str
    data_root: Path | None
    artifacts_dir: Path
    """``<runs>/<profile>/artifacts``: trained checkpoints and measurement records live here."""
    force: bool = False
    device: str = "cpu"


class FigureMaker(Protocol):
    def __call__(self, results: list[TableResult], runs_root: Path, profile: str, out_dir: Path) -> list[Path]: ...


@dataclass(frozen=True)
class Paper:
    name: str
    title: str
    arxiv: str
    tables_dir: Path
    prepare: Callable[[PrepareContext], Mapping[str, Path]] | None = None
    """Train or fetch what the runs need; returns model aliases -> checkpoint dirs. Must be resumable."""
    figures: FigureMaker | None = None
    notes: Mapping[str, str] = field(default_factory=dict)
    """Per-profile text for the report (which data subset, which models)."""

    def table_paths(self) -> list[Path]:
        return sorted(self.tables_dir.glob("*.yaml"))

    def tables(self, profile: str) -> list[TableSpec]:
        """Tables evaluated at this profile (those marked ``skip`` there are left out)."""
        return [t for t in self.all_tables(profile) if t.skipped is None]

    def all_tables(self, profile: str) -> list[TableSpec]:
        return [load_table(p, profile) for p in self.table_paths()]


def describe(paper: Paper) -> dict[str, Any]:
    return {"name": paper.name, "title": paper.title, "arxiv": paper.arxiv,
            "tables": [p.stem for p in paper.table_paths()]}


def write_artifact_record(path: Path, *, key: str, metrics: Mapping[str, Mapping[str, Any]], n_examples: int,
                          data_files: list[Path], started: float, seeds: Mapping[str, int]) -> None:
    """Store measurements that are not per-example runs (training cost, per-layer curves) in the run-record
    schema, with provenance, so tables can read them like any run. ``key`` says what produced them: a
    record whose key no longer matches the code/config is recomputed, never reused."""
    import time

    from suite.provenance import provenance
    from suite.runner import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"key": key, "n_examples": n_examples, "metrics": dict(metrics),
                             "provenance": provenance(dict(seeds), data_files),
                             "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "wall_s": time.perf_counter() - started})


def artifact_record_is_current(path: Path, key: str) -> bool:
    import json

    try:
        return json.loads(path.read_text()).get("key") == key
    except (FileNotFoundError, json.JSONDecodeError):
        return False
