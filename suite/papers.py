"""What a reproduction package provides to the suite: its tables and how to prepare its models."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from suite.compare import TableResult
from suite.tables import TableSpec, load_table
from suite.records import artifact_record_is_current, write_artifact_record  # noqa: F401  (re-exported for plug-ins)


@dataclass(frozen=True)
class PrepareContext:
    profile: str
    data_root: Path | None
    artifacts_dir: Path
    """``<runs>/<profile>/artifacts``: trained checkpoints and measurement records live here."""
    force: bool = False
    device: str = "cpu"
    """Resolved device for training and evaluation (``--device``)."""
    dtype: str = "float32"
    """Resolved compute dtype name (``--dtype``; chosen by capability when auto)."""


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
