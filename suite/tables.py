"""Paper-table specs: YAML data files that are the single source of truth for a paper's numbers.

A spec names the runs that fill each row, the metric behind each column, the
paper's value per cell, tolerances against the paper, gate tolerances against
pinned baselines, and claims. Values may differ by profile with
``{by_profile: {smoke: .., mini: .., paper: ..}}`` anywhere in a run or label.
Loading validates everything and fails with one line naming the file and field.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from suite.registry import PROFILES
from suite.spec import RunSpec

CLAIM_OPS = ("==", "!=", ">", ">=", "<", "<=", "increasing", "nondecreasing")


class TableSpecError(ValueError):
    pass


@dataclass(frozen=True)
class Tolerance:
    abs: float | None = None
    rel: float | None = None
    band: tuple[float, float] | None = None
    skip: str | None = None
    """A reason not to compare this column (e.g. timing on unknown hardware)."""

    def within(self, ours: float, ref: float) -> bool:
        if self.band is not None:
            return self.band[0] <= ours <= self.band[1]
        limit = 0.0
        if self.abs is not None:
            limit = max(limit, self.abs)
        if self.rel is not None:
            limit = max(limit, self.rel * abs(ref))
        return abs(ours - ref) <= limit + 1e-12

    def describe(self) -> str:
        if self.skip:
            return f"not compared ({self.skip})"
        if self.band is not None:
            return f"in [{self.band[0]:g}, {self.band[1]:g}]"
        parts = ([f"±{self.abs:g}"] if self.abs is not None else []) + ([f"±{100 * self.rel:g}%"] if self.rel is not None else [])
        return " or ".join(parts) or "exact"


@dataclass(frozen=True)
class Column:
    id: str
    label: str
    metric: str | None
    fmt: str = "{:.3g}"


@dataclass(frozen=True)
class Row:
    id: str
    label: str
    run: RunSpec | None
    artifact: str | None
    paper: Mapping[str, float | None]
    derived: Mapping[str, Mapping[str, Any]]
    skip: tuple[str, ...]
    cell_runs: Mapping[str, RunSpec] = field(default_factory=dict)
    """Columns filled by another run than the row's (e.g. Table 7's TOPv2 and CNN/DM columns)."""
    vars: Mapping[str, Any] = field(default_factory=dict)
    """Row variables substituted into the label and into column metric names (e.g. ``acc_layer{layer}``)."""


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    check: Mapping[str, Any]
    gate: bool = True
    """False for claims about wall-clock time, which the gate must not fail on machine noise."""


@dataclass(frozen=True)
class TableSpec:
    id: str
    paper: str
    title: str
    caption: str
    source: str
    profile: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    tolerances: Mapping[str, Tolerance]
    gate: Mapping[str, Tolerance]
    claims: tuple[Claim, ...]
    notes: tuple[str, ...] = field(default=())
    path: Path | None = None
    skipped: str | None = None
    """Why this table is not evaluated at this profile (e.g. no released weights offline)."""

    def runs(self) -> list[RunSpec]:
        seen: dict[str, RunSpec] = {}
        for r in self.rows:
            for spec in ([r.run] if r.run is not None else []) + list(r.cell_runs.values()):
                seen.setdefault(spec.hash, spec)
        return list(seen.values())

    def column(self, cid: str) -> Column:
        for c in self.columns:
            if c.id == cid:
                return c
        raise KeyError(cid)


def _pick(value: Any, profile: str) -> Any:
    """Resolve ``{by_profile: {...}}`` recursively."""
    if isinstance(value, Mapping):
        if set(value) == {"by_profile"}:
            options = value["by_profile"]
            if profile not in options:
                raise KeyError(f"by_profile has no value for profile {profile!r}")
            return _pick(options[profile], profile)
        return {k: _pick(v, profile) for k, v in value.items()}
    if isinstance(value, list):
        return [_pick(v, profile) for v in value]
    return value


def _tolerance(where: str, d: Any) -> Tolerance:
    if not isinstance(d, Mapping) or not set(d) <= {"abs", "rel", "band", "skip"} or not d:
        raise TableSpecError(f"{where}: a tolerance is a mapping with abs, rel, band or skip, got {d!r}")
    band = tuple(float(x) for x in d["band"]) if "band" in d else None
    if band is not None and len(band) != 2:
        raise TableSpecError(f"{where}.band: needs [low, high]")
    return Tolerance(abs=d.get("abs"), rel=d.get("rel"), band=band, skip=d.get("skip"))  # type: ignore[arg-type]


def load_table(path: Path, profile: str) -> TableSpec:
    if profile not in PROFILES:
        raise TableSpecError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise TableSpecError(f"{path}{line}: invalid YAML ({getattr(e, 'problem', e)})") from e
    if not isinstance(raw, Mapping):
        raise TableSpecError(f"{path}: a table spec must be a mapping")
    try:
        return _build(raw, profile, path)
    except TableSpecError:
        raise
    except (KeyError, TypeError, ValueError) as e:
        raise TableSpecError(f"{path}: {e}") from e


def _build(raw: Mapping[str, Any], profile: str, path: Path) -> TableSpec:
    def need(d: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in d:
            raise TableSpecError(f"{path}: {where} is missing the field {key!r}")
        return d[key]

    tid = need(raw, "id", "the table")
    known = {"id", "paper", "title", "caption", "source", "defaults", "profiles", "columns", "rows", "tolerances",
             "gate", "claims", "notes"}
    extra = set(raw) - known
    if extra:
        raise TableSpecError(f"{path}: unknown top-level field(s) {sorted(extra)} (known: {sorted(known)})")
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise TableSpecError(f"{path}: profiles has no entry for {profile!r}")
    prof = _pick(profiles[profile] or {}, profile)
    if isinstance(prof, Mapping) and "skip" in prof:
        return TableSpec(id=tid, paper=raw.get("paper", ""), title=raw.get("title", tid), caption=raw.get("caption", ""),
                         source=raw.get("source", ""), profile=profile, columns=(), rows=(), tolerances={}, gate={},
                         claims=(), notes=tuple(raw.get("notes") or ()), path=path, skipped=str(prof["skip"]))
    defaults = _pick(raw.get("defaults") or {}, profile)

    columns = []
    for i, c in enumerate(_pick(need(raw, "columns", "the table"), profile)):
        columns.append(Column(id=need(c, "id", f"columns[{i}]"), label=c.get("label", c["id"]), metric=c.get("metric"),
                              fmt=c.get("fmt", "{:.3g}")))
    col_ids = {c.id for c in columns}

    rows = []
    for i, r in enumerate(need(raw, "rows", "the table")):
        where = f"rows[{i}]"
        rid = need(r, "id", where)
        def make_run(rr: Mapping[str, Any], where_run: str) -> RunSpec:
            merged = {**defaults, **{k: v for k, v in prof.items() if k != "params" and k != "task_args"}, **rr}
            params = {**defaults.get("params", {}), **prof.get("params", {}), **rr.get("params", {})}
            task_args = {**defaults.get("task_args", {}), **prof.get("task_args", {}), **rr.get("task_args", {})}
            bad = set(merged) - {"task", "system", "split", "limit", "seed", "params", "task_args"}
            if bad:
                raise TableSpecError(f"{path}: {where_run} has unknown field(s) {sorted(bad)}")
            return RunSpec.make(need(merged, "task", where_run), need(merged, "system", where_run), profile,
                                split=merged.get("split", "test"), limit=merged.get("limit"),
                                seed=merged.get("seed", 0), task_args=task_args, params=params)

        run = make_run(_pick(r["run"], profile), f"{where}.run") if r.get("run") is not None else None
        label_vars = {**run.params_dict, **run.task_args_dict} if run is not None else {}
        cell_runs = {}
        for cid, cr in (_pick(r.get("cell_runs") or {}, profile)).items():
            base = _pick(r.get("run") or {}, profile)
            cell_runs[cid] = make_run({**base, **cr, "params": {**base.get("params", {}), **cr.get("params", {})}},
                                      f"{where}.cell_runs.{cid}")
        row_vars = _pick(r.get("vars") or {}, profile)
        label_vars.update(row_vars)
        paper = _pick(r.get("paper") or {}, profile)
        for key in list(paper) + list(r.get("derived") or {}) + list(_pick(r.get("skip") or [], profile)) + list(cell_runs):
            if key not in col_ids:
                raise TableSpecError(f"{path}: {where} ({rid}) names unknown column {key!r}")
        label = str(_pick(r.get("label", rid), profile))
        try:
            label = label.format(**label_vars)
        except (KeyError, IndexError) as e:
            raise TableSpecError(f"{path}: {where}.label refers to {e} which the run does not set") from e
        rows.append(Row(id=rid, label=label, run=run, artifact=_pick(r.get("artifact"), profile),
                        paper=paper, derived=_pick(r.get("derived") or {}, profile),
                        skip=tuple(_pick(r.get("skip") or [], profile)), cell_runs=cell_runs, vars=row_vars))
    row_ids = [r.id for r in rows]
    if len(set(row_ids)) != len(row_ids):
        raise TableSpecError(f"{path}: duplicate row ids")

    def tol_map(name: str) -> dict[str, Tolerance]:
        out = {}
        for cid, t in (_pick(raw.get(name) or {}, profile)).items():
            if cid not in col_ids:
                raise TableSpecError(f"{path}: {name} names unknown column {cid!r}")
            out[cid] = _tolerance(f"{path}: {name}.{cid}", t)
        return out

    claims = []
    for i, c in enumerate(raw.get("claims") or []):
        check = _pick(need(c, "check", f"claims[{i}]"), profile)
        if check.get("op") not in CLAIM_OPS:
            raise TableSpecError(f"{path}: claims[{i}].check.op must be one of {CLAIM_OPS}, got {check.get('op')!r}")
        claims.append(Claim(id=need(c, "id", f"claims[{i}]"), text=need(c, "text", f"claims[{i}]"), check=check,
                            gate=bool(_pick(c.get("gate", True), profile))))

    return TableSpec(id=tid, paper=raw.get("paper", ""), title=raw.get("title", tid), caption=raw.get("caption", ""),
                     source=raw.get("source", ""), profile=profile, columns=tuple(columns), rows=tuple(rows),
                     tolerances=tol_map("tolerances"), gate=tol_map("gate"), claims=tuple(claims),
                     notes=tuple(raw.get("notes") or ()), path=path)
