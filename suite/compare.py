"""Fill a table spec from stored run records and judge every cell and claim.

Nothing here computes a model output: values come only from ``metrics.json``
files of finished runs (or artifact records), so a report can always be traced
back to the records that produced it.
"""
from __future__ import annotations

import difflib
import operator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from suite.records import read_json
from suite.runner import check_metrics, load_metrics
from suite.tables import TableSpec

VERDICTS = ("matches", "deviates", "not run", "no paper value", "not compared")


@dataclass
class Cell:
    row: str
    col: str
    ours: float | None = None
    ci95: tuple[float, float] | None = None
    paper: float | None = None
    delta: float | None = None
    verdict: str = "not run"
    source: str | None = None
    """Run folder (or artifact) the value was read from."""
    marks: tuple[str, ...] = ()
    """Markers of the paper's contradictions that affect this cell (e.g. ``[C1]``), explained in the notes."""
    metric_kind: str | None = None
    """``score``/``stat`` (a per-example mean: the gate compares it example by example), ``dataset``, or None."""


@dataclass
class ClaimResult:
    id: str
    text: str
    holds: bool | None
    detail: str


@dataclass
class TableResult:
    table: str
    title: str
    profile: str
    cells: dict[str, Cell] = field(default_factory=dict)
    claims: list[ClaimResult] = field(default_factory=list)
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Run folder -> provenance summary of the runs this table read."""

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "title": self.title, "profile": self.profile,
                "cells": {k: asdict(v) for k, v in self.cells.items()},
                "claims": [asdict(c) for c in self.claims], "runs": self.runs}


def _artifact_metrics(runs_root: Path, profile: str, name: str) -> dict[str, Any] | None:
    path = runs_root / profile / "artifacts" / name / "metrics.json"
    if not path.exists():
        return None
    return check_metrics(read_json(path), path)


def evaluate_table(spec: TableSpec, runs_root: Path) -> TableResult:
    res = TableResult(spec.id, spec.title, spec.profile)
    def read(run, artifact):
        if run is not None:
            m, source = load_metrics(run, runs_root), f"{run.profile}/{run.dirname}"
        elif artifact is not None:
            m, source = _artifact_metrics(runs_root, spec.profile, artifact), f"{spec.profile}/artifacts/{artifact}"
        else:
            return None, None
        if m is not None:
            prov = m.get("provenance", {})
            res.runs[source] = {"git": prov.get("git"), "finished_at": m.get("finished_at"),
                                "n_examples": m.get("n_examples"), "hardware": prov.get("hardware", {}).get("cpu")}
        return m, source

    for row in spec.rows:
        row_m, row_source = read(row.run, row.artifact)
        for col in spec.columns:
            cell = Cell(row.id, col.id, paper=row.paper.get(col.id),
                        marks=tuple(spec.cell_marks.get(f"{row.id}.{col.id}", ())))
            if col.id in row.skip:
                continue
            m, source = read(row.cell_runs[col.id], None) if col.id in row.cell_runs else (row_m, row_source)
            if col.metric and m is not None and col.id not in row.derived:
                name = col.metric.format(**row.vars)
                entry = m.get("metrics", {}).get(name)
                # A finished run without the metric is a misspelt name, not a cell to leave empty; an artifact
                # that its prepare step fills task by task (``produce``) may simply not have reached it yet.
                incremental = row.produce is not None and col.id not in row.cell_runs
                if entry is None and not incremental:
                    raise ValueError(_absent_metric(spec, f"{row.id}.{col.id}", name, source, m["metrics"]))
                if entry is not None:
                    cell.ours = float(entry["value"])
                    cell.ci95 = tuple(entry["ci95"]) if entry.get("ci95") else None
                    cell.source = source
                    cell.metric_kind = entry.get("kind")
            res.cells[f"{row.id}.{col.id}"] = cell
    for row in spec.rows:  # derived cells read other cells, so they come second
        for cid, how in row.derived.items():
            cell = res.cells[f"{row.id}.{cid}"]
            cell.ours, cell.source = _derive(how, res.cells, f"{spec.id}:{row.id}.{cid}")
    for cell in res.cells.values():
        _judge(cell, spec)
    # a claim about a cell not filled at this profile is "not run", not a spec error
    claim_cells = {**{f"{r.id}.{c}": Cell(r.id, c) for r in spec.rows for c in r.skip}, **res.cells}
    for claim in spec.claims:
        holds, detail = _check(claim.check, claim_cells, f"{spec.id}:{claim.id}")
        res.claims.append(ClaimResult(claim.id, claim.text, holds, detail))
    return res


def _absent_metric(spec: TableSpec, cell: str, name: str, source: str | None, metrics: dict[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(metrics), n=3, cutoff=0.5)
    hint = (f"; did you mean {', '.join(repr(c) for c in close)}?" if close
            else f" (it has: {', '.join(sorted(metrics)) or 'none'})")
    return (f"{spec.path or spec.id}: table {spec.id} cell {cell} names metric {name!r}, which {source} does not "
            f"produce{hint}")


def _derive(how: Any, cells: dict[str, Cell], where: str) -> tuple[float | None, str | None]:
    if not isinstance(how, dict) or len(how) != 1:
        raise ValueError(f"{where}: a derived cell is one of {{ratio: [a, b]}}, {{diff: [a, b]}}, got {how!r}")
    (kind, refs), = how.items()
    vals = [_ref(r, cells, where) for r in refs]
    if any(v is None for v in vals):
        return None, None
    a, b = vals
    if kind == "ratio":
        return (a / b if b else None), f"{kind}({', '.join(refs)})"
    if kind == "diff":
        return a - b, f"{kind}({', '.join(refs)})"
    raise ValueError(f"{where}: unknown derivation {kind!r}")


def _ref(ref: Any, cells: dict[str, Cell], where: str) -> float | None:
    """A number, a cell ``row.col``, or a bound of its 95% CI ``row.col@lo`` / ``row.col@hi`` (so a claim can
    ask for a difference larger than the noise: ``a.top1@lo > b.top1@hi``)."""
    if isinstance(ref, (int, float)):
        return float(ref)
    name, _, bound = str(ref).partition("@")
    if name not in cells or bound not in ("", "lo", "hi"):
        raise ValueError(f"{where}: reference {ref!r} is not a cell (row.column, optionally @lo or @hi) of this table")
    cell = cells[name]
    if not bound:
        return cell.ours
    if cell.ours is not None and cell.ci95 is None:
        raise ValueError(f"{where}: reference {ref!r}: cell {name} has no 95% CI")
    return None if cell.ci95 is None else float(cell.ci95[0 if bound == "lo" else 1])


def _judge(cell: Cell, spec: TableSpec) -> None:
    if cell.ours is None:
        cell.verdict = "not run"
        return
    if cell.paper is None:
        cell.verdict = "no paper value"
        return
    cell.delta = cell.ours - cell.paper
    tol = spec.tolerances.get(cell.col)
    if tol is None or tol.skip:
        cell.verdict = "not compared"
        return
    inside_ci = cell.ci95 is not None and cell.ci95[0] <= cell.paper <= cell.ci95[1]
    cell.verdict = "matches" if tol.within(cell.ours, cell.paper) or inside_ci else "deviates"


_OPS = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge, "<": operator.lt,
        "<=": operator.le}


def _check(check: dict[str, Any], cells: dict[str, Cell], where: str) -> tuple[bool | None, str]:
    op = check["op"]
    if op in ("increasing", "nondecreasing"):
        refs = check["refs"]
        vals = [_ref(r, cells, where) for r in refs]
        if any(v is None for v in vals):
            return None, "not run"
        cmp = operator.lt if op == "increasing" else operator.le
        holds = all(cmp(a, b) for a, b in zip(vals, vals[1:]))
        return holds, " → ".join(f"{r}={v:.4g}" for r, v in zip(refs, vals))

    def side(name: str) -> tuple[float | None, str]:
        v = check[name]
        if isinstance(v, list):
            vals = [_ref(r, cells, where) for r in v]
            if any(x is None for x in vals):
                return None, ""
            reduce = check.get("reduce", "max")
            pick = max(vals) if reduce == "max" else min(vals)
            return pick, f"{reduce}({', '.join(v)})={pick:.4g}"
        x = _ref(v, cells, where)
        return x, (f"{v}={x:.4g}" if isinstance(v, str) and x is not None else f"{x}")

    left, ldesc = side("left")
    right, rdesc = side("right")
    if left is None or right is None:
        return None, "not run"
    margin = float(check.get("margin", 0.0))
    tol = float(check.get("tol", 0.0))
    if op == "==":
        holds = abs(left - right) <= tol
    elif op in (">", ">="):
        holds = _OPS[op](left, right + margin)
    elif op in ("<", "<="):
        holds = _OPS[op](left, right - margin)
    else:
        holds = _OPS[op](left, right)
    extra = f" + margin {margin:g}" if margin else ""
    return bool(holds), f"{ldesc} {op} {rdesc}{extra}"
