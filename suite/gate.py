"""The regression gate: fresh table values vs pinned baselines.

Like detectron2's ``verify_results``: expected values, a copy-pasteable summary, exit status 1 naming
every regressed cell. A claim that held in the baseline and no longer holds is a regression too. Changes
in either direction count: a scorer that suddenly passes everything is as broken as one that fails
everything.

Two kinds of decision, and the report says which one each cell gets (:func:`cell_gate`):

* **paired** — a cell that is the mean of a per-example score of a run (EM, pass@1, acceptance). A fixed
  tolerance such as ±0.03 on 100 examples is far inside sampling noise (the 95% CI of a 0.5 accuracy on
  100 examples is about ±0.10), so it either fails on noise or misses real changes. The baseline stores
  every example's value instead, and the gate takes the differences fresh − baseline example by example
  (the same examples, so most differences are 0) and flags the cell when the 95% bootstrap CI of their
  mean excludes 0: a few flips either way pass, a systematic change fails;
* **tolerance** — everything that is deterministic or has no per-example records (artifact records such as
  cost models and per-layer curves, derived ratios): the table spec's gate tolerance, exact by default.

Baseline file (diff-friendly JSON, sorted keys)::

    {"format": 2, "meta": {git commit, dirty, ...},
     "tables": {table: {"cells": {row.col: value}, "claims": {id: held},
                        "examples": {row.col: {example id: value}}}}}

A format-1 file (``{table: {"cells", "claims"}}``) still loads; its cells are gated by tolerance.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from suite.compare import Cell, TableResult
from suite.records import read_json, read_run_records, write_json_atomic
from suite.tables import TableSpec, Tolerance

DEFAULT_GATE = Tolerance(abs=1e-9)
FORMAT = 2
PAIRED_RESAMPLES = 2000
PAIRED = "paired bootstrap of per-example differences (95% CI of the mean difference must contain 0)"


@dataclass
class Regression:
    where: str
    message: str


@dataclass(frozen=True)
class PairedResult:
    n: int
    mean_diff: float
    ci95: tuple[float, float]
    changed: int
    """Examples whose value differs from the baseline's."""

    @property
    def significant(self) -> bool:
        return self.ci95[0] > 0.0 or self.ci95[1] < 0.0


def baseline_path(baselines_dir: Path, profile: str, paper: str) -> Path:
    return Path(baselines_dir) / profile / f"{paper}.json"


# ----------------------------------------------------------------------------- which cells are gated how


def _row(spec: TableSpec, row_id: str):
    return next((r for r in spec.rows if r.id == row_id), None)


def cell_metric(spec: TableSpec, cell: Cell) -> str | None:
    """The metric name behind a run-sourced cell (column metric with the row's variables filled in)."""
    row = _row(spec, cell.row)
    try:
        col = spec.column(cell.col)
    except KeyError:
        return None
    if row is None or not col.metric or cell.col in row.derived:
        return None
    return col.metric.format(**row.vars)


def _is_run_source(cell: Cell) -> bool:
    src = cell.source or ""
    parts = src.split("/")
    return len(parts) == 2 and "(" not in src and parts[1] != "artifacts"


def gate_tolerance(spec: TableSpec, key: str) -> Tolerance:
    """The cell's own gate tolerance (``row.column`` in the spec), else its column's, else exact."""
    return spec.gate.get(key) or spec.gate.get(key.split(".", 1)[-1], DEFAULT_GATE)


def cell_gate(spec: TableSpec, cell: Cell) -> str:
    """How the gate decides this cell: ``paired``, ``tolerance ±x`` / ``exact``, or ``not gated (why)``."""
    tol = gate_tolerance(spec, f"{cell.row}.{cell.col}")
    if tol.skip:
        return f"not gated ({tol.skip})"
    if _is_run_source(cell) and getattr(cell, "metric_kind", None) in ("score", "stat"):
        return "paired"
    return "exact" if tol == DEFAULT_GATE else f"tolerance {tol.describe()}"


def column_gates(spec: TableSpec, result: TableResult) -> dict[str, str]:
    """Column id -> the gate kinds its cells get (for the report), e.g. ``paired`` or ``paired; exact``."""
    out: dict[str, list[str]] = {}
    for cell in result.cells.values():
        if cell.ours is None:
            continue
        kinds = out.setdefault(cell.col, [])
        kind = cell_gate(spec, cell)
        if kind not in kinds:
            kinds.append(kind)
    return {c.id: "; ".join(out[c.id]) for c in spec.columns if c.id in out}


def per_example_values(runs_root: Path, spec: TableSpec, cell: Cell) -> dict[str, float] | None:
    """Each example's value of the cell's metric, from the run folder the cell was read from."""
    metric = cell_metric(spec, cell)
    if metric is None or not _is_run_source(cell):
        return None
    path = Path(runs_root) / str(cell.source)
    values: dict[str, float] = {}
    for rec in read_run_records(path):
        for section in ("scores", "stats"):
            v = (rec.get(section) or {}).get(metric)
            if v is not None:
                values[str(rec["id"])] = float(v)
                break
    return values or None


# ----------------------------------------------------------------------------- statistics


def paired_test(base: Mapping[str, float], fresh: Mapping[str, float], *, seed: int = 0,
                resamples: int = PAIRED_RESAMPLES) -> PairedResult:
    """Percentile bootstrap CI of mean(fresh - base) over the shared examples (caller checks the id sets)."""
    ids = sorted(base)
    d = np.asarray([fresh[i] - base[i] for i in ids], dtype=np.float64)
    changed = int(np.count_nonzero(np.abs(d) > 1e-12))
    if changed == 0:
        return PairedResult(len(ids), 0.0, (0.0, 0.0), 0)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    ci = (float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975)))
    return PairedResult(len(ids), float(d.mean()), ci, changed)


# ----------------------------------------------------------------------------- baselines


def snapshot(specs: list[TableSpec], results: list[TableResult], runs_root: Path | None = None,
             meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Baseline content: every cell value, the claims the gate watches (not wall-clock ones), and the
    per-example values behind every paired cell (when ``runs_root`` is given)."""
    by_id = {s.id: s for s in specs}
    tables: dict[str, Any] = {}
    for r in results:
        spec = by_id[r.table]
        gated_claims = {c.id for c in spec.claims if c.gate}
        entry: dict[str, Any] = {"cells": {k: c.ours for k, c in sorted(r.cells.items())},
                                 "claims": {c.id: c.holds for c in r.claims if c.id in gated_claims}}
        examples = {}
        if runs_root is not None:
            for key, cell in sorted(r.cells.items()):
                if cell.ours is not None and cell_gate(spec, cell) == "paired":
                    values = per_example_values(runs_root, spec, cell)
                    if values:
                        examples[key] = values
        if examples:
            entry["examples"] = examples
        tables[r.table] = entry
    return {"format": FORMAT, "meta": dict(meta or {}), "tables": tables}


def write_baseline(path: Path, data: Mapping[str, Any]) -> None:
    write_json_atomic(path, data)


def load_baseline(path: Path) -> dict[str, Any]:
    """A validated baseline in format 2, or a one-line error naming the file and the bad field."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no pinned baseline; create it deliberately with "
                                f"`repro gate --update-baselines`")
    try:
        raw = read_json(path)
    except ValueError as e:
        raise ValueError(f"{e}".replace("; delete it or rerun with --force", "; restore it from git")) from e
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a baseline must be a JSON object, got {type(raw).__name__}")
    if "format" in raw:
        if raw["format"] != FORMAT:
            raise ValueError(f"{path}: field 'format' is {raw['format']!r}; this gate reads format {FORMAT}")
        tables, meta = raw.get("tables"), raw.get("meta", {})
    else:
        tables, meta = raw, {}
    if not isinstance(tables, dict):
        raise ValueError(f"{path}: field 'tables' must be an object of table id -> cells/claims")
    for tid, t in tables.items():
        _check_table(path, tid, t)
    return {"format": FORMAT, "meta": meta if isinstance(meta, dict) else {}, "tables": tables}


def _number_or_null(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _check_table(path: Path, tid: str, t: Any) -> None:
    if not isinstance(t, dict):
        raise ValueError(f"{path}: field '{tid}' must be an object with 'cells' and 'claims'")
    extra = set(t) - {"cells", "claims", "examples"}
    if extra:
        raise ValueError(f"{path}: field '{tid}' has unknown key(s) {sorted(extra)} (known: cells, claims, examples)")
    for key, v in (t.get("cells") or {}).items():
        if "." not in key:
            raise ValueError(f"{path}: field '{tid}.cells.{key}' is not a row.column key")
        if not _number_or_null(v):
            raise ValueError(f"{path}: field '{tid}.cells.{key}' is {v!r}, not a number or null")
    for cid, held in (t.get("claims") or {}).items():
        if held is not None and not isinstance(held, bool):
            raise ValueError(f"{path}: field '{tid}.claims.{cid}' is {held!r}, not true/false/null")
    for key, values in (t.get("examples") or {}).items():
        if not isinstance(values, dict) or not all(_number_or_null(v) and v is not None for v in values.values()):
            raise ValueError(f"{path}: field '{tid}.examples.{key}' must map example ids to numbers")


# ----------------------------------------------------------------------------- the check


def check(specs: list[TableSpec], results: list[TableResult], baseline: Mapping[str, Any],
          runs_root: Path | None = None) -> list[Regression]:
    """Every regressed cell and claim. ``baseline`` is what :func:`load_baseline` returns (or a format-1
    mapping of tables); paired cells need ``runs_root`` to read the fresh per-example records."""
    tables = baseline["tables"] if "format" in baseline else baseline
    out: list[Regression] = []
    by_id = {s.id: s for s in specs}
    fresh = {r.table: r for r in results}
    for table_id, base in sorted(tables.items()):
        spec, res = by_id.get(table_id), fresh.get(table_id)
        if spec is None or res is None:
            out.append(Regression(table_id, "table is in the baseline but was not evaluated"))
            continue
        examples = base.get("examples", {})
        for key, expected in sorted(base.get("cells", {}).items()):
            reg = _check_cell(spec, res, key, expected, examples.get(key), runs_root)
            if reg is not None:
                out.append(reg)
        for cid, held in sorted(base.get("claims", {}).items()):
            now = next((c for c in res.claims if c.id == cid), None)
            if held and (now is None or not now.holds):
                detail = now.detail if now else "claim missing"
                out.append(Regression(f"{table_id}:claim:{cid}", f"held in the baseline, now fails ({detail})"))
    return out


def _check_cell(spec: TableSpec, res: TableResult, key: str, expected: float | None,
                base_examples: Mapping[str, float] | None, runs_root: Path | None) -> Regression | None:
    tol = gate_tolerance(spec, key)
    if tol.skip or expected is None:
        return None
    where = f"{spec.id}:{key}"
    cell = res.cells.get(key)
    got = cell.ours if cell else None
    if got is None:
        return Regression(where, f"baseline {expected:.6g}, now not run")
    if base_examples and runs_root is not None and cell is not None:
        return _check_paired(spec, cell, where, expected, got, base_examples, runs_root)
    if not tol.within(got, expected):
        allowed = "exact" if tol == DEFAULT_GATE else tol.describe()
        return Regression(where, f"baseline {expected:.6g}, now {got:.6g} (Δ {got - expected:+.4g}; "
                                 f"allowed {allowed})")
    return None


def _check_paired(spec: TableSpec, cell: Cell, where: str, expected: float, got: float,
                  base_examples: Mapping[str, float], runs_root: Path) -> Regression | None:
    fresh = per_example_values(runs_root, spec, cell)
    if fresh is None:
        return Regression(where, f"baseline {expected:.6g}, now {got:.6g}; the fresh run has no per-example "
                                 f"records to compare with the baseline's")
    mean = sum(fresh.values()) / len(fresh)
    if abs(mean - got) > 1e-9 * max(1.0, abs(got)):
        return Regression(where, f"baseline {expected:.6g}, now {got:.6g}, but the run's records average "
                                 f"{mean:.6g}: its metrics.json does not match its records.jsonl")
    if set(fresh) != set(base_examples):
        return Regression(where, f"compared on other examples than the baseline ({len(base_examples)} pinned, "
                                 f"{len(fresh)} now, {len(set(fresh) ^ set(base_examples))} differ); re-pin "
                                 f"deliberately with --update-baselines")
    res = paired_test(base_examples, fresh)
    if not res.significant:
        return None
    return Regression(where, f"baseline {expected:.6g}, now {got:.6g} (paired over {res.n} examples: "
                             f"{res.changed} changed, mean Δ {res.mean_diff:+.4g}, 95% CI "
                             f"[{res.ci95[0]:+.4g}, {res.ci95[1]:+.4g}] excludes 0)")
