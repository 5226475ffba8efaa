"""Paper-table specs: YAML data files that are the single source of truth for a paper's numbers.

A spec names the runs that fill each row, the metric behind each column, the
paper's value per cell, tolerances against the paper, gate tolerances against
pinned baselines, and claims. Values may differ by profile with
``{by_profile: {smoke: .., mini: .., paper: ..}}`` anywhere in a run or label.
Loading validates everything and fails with one line naming the file and field.

What a reader must know to interpret a cell lives in the spec too, and reaches the report as notes:

* ``definitions``: metric definitions, precision and sample counts (e.g. whether time per token includes
  prefill), one line each;
* ``contradictions``: places where the paper disagrees with itself, each naming the cells (``row.col``),
  rows (``row``) or the whole table (``table``) it affects; those get a marker such as ``[C1]``;
* ``not_reproducible``: what the paper's released artefacts lack (e.g. never-released checkpoints); the
  table still runs once a user supplies them;
* a row's ``skip`` is a list of columns not filled, or a string: the whole row is not run at this profile,
  for that reason (its paper values are still shown);
* a row's ``produce`` (merged over ``defaults.produce``) says how the paper's prepare step makes the row's
  ``artifact`` (e.g. an lm-eval call). The suite never interprets it: it is handed to the paper's plug-in.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field, replace
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
    produce: Mapping[str, Any] | None = None
    """How the paper's prepare step makes ``artifact`` (opaque to the suite; ``kind`` names the producer)."""
    unavailable: str | None = None
    """Why the whole row is not run at this profile (its paper values are still shown)."""


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    check: Mapping[str, Any]
    gate: bool = True
    """False for claims about wall-clock time, which the gate must not fail on machine noise."""


@dataclass(frozen=True)
class Contradiction:
    """The paper says two different things; ``where`` lists the affected ``row.col``, ``row`` or ``table``."""

    id: str
    text: str
    where: tuple[str, ...]
    mark: str = ""
    """The marker printed next to the affected cells (``[C1]``), numbered per table."""


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
    definitions: tuple[tuple[str, str], ...] = ()
    """(name, definition) pairs: metric definitions, precision, sample counts."""
    contradictions: tuple[Contradiction, ...] = ()
    not_reproducible: str | None = None
    """What the paper's released artefacts lack; printed by the report (the table still runs when supplied)."""
    cell_marks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """``row.col`` -> contradiction markers shown next to that cell."""

    def artifacts(self) -> dict[str, Mapping[str, Any]]:
        """Artifact name -> the ``produce`` declaration of the rows that read it (rows without one are left out)."""
        return {r.artifact: r.produce for r in self.rows if r.artifact and r.produce is not None}

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


def _merge(base: Any, over: Any) -> Any:
    """``over`` on top of ``base``, recursively for mappings (so a row adds model args to the defaults')."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        return {**base, **{k: _merge(base.get(k), v) for k, v in over.items()}}
    return over if over is not None else base


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


KNOWN_FIELDS = {"id", "paper", "title", "caption", "source", "defaults", "profiles", "columns", "rows", "tolerances",
                "gate", "claims", "notes", "definitions", "contradictions", "not_reproducible"}
RUN_FIELDS = {"task", "system", "split", "limit", "seed", "params", "task_args"}
COLUMN_FIELDS = {"id", "label", "metric", "fmt"}
ROW_FIELDS = {"id", "label", "run", "artifact", "paper", "derived", "skip", "cell_runs", "vars", "produce"}
CLAIM_FIELDS = {"id", "text", "check", "gate"}
CHECK_FIELDS = {"op", "left", "right", "refs", "reduce", "margin", "tol"}


def _check_keys(d: Any, known: set[str], where: str, path: Path) -> None:
    """Reject unknown keys, suggesting the close match: a misspelt ``papr:`` must not silently drop values."""
    if not isinstance(d, Mapping):
        raise TableSpecError(f"{path}: {where.removeprefix('field of ')} must be a mapping, got {d!r}")
    for key in sorted(set(d) - known, key=str):
        close = difflib.get_close_matches(str(key), sorted(known), n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TableSpecError(f"{path}: unknown {where} {key!r}{hint} (known: {', '.join(sorted(known))})")


def _build(raw: Mapping[str, Any], profile: str, path: Path) -> TableSpec:
    def need(d: Mapping[str, Any], key: str, where: str) -> Any:
        if key not in d:
            raise TableSpecError(f"{path}: {where} is missing the field {key!r}")
        return d[key]

    tid = need(raw, "id", "the table")
    _check_keys(raw, KNOWN_FIELDS, "top-level field", path)
    profiles = raw.get("profiles") or {}
    if profile not in profiles:
        raise TableSpecError(f"{path}: profiles has no entry for {profile!r}")
    prof = _pick(profiles[profile] or {}, profile)
    head = dict(id=tid, paper=raw.get("paper", ""), title=raw.get("title", tid), caption=raw.get("caption", ""),
                source=raw.get("source", ""), profile=profile, path=path,
                definitions=_definitions(raw.get("definitions"), profile, path),
                not_reproducible=_opt_str(_pick(raw.get("not_reproducible"), profile), path, "not_reproducible"))
    if isinstance(prof, Mapping) and "skip" in prof:
        notes = _notes(head, (), raw.get("notes"), profile)
        return TableSpec(**head, columns=(), rows=(), tolerances={}, gate={}, claims=(), notes=notes,
                         skipped=str(prof["skip"]))
    defaults = dict(_pick(raw.get("defaults") or {}, profile))
    produce_default = defaults.pop("produce", None)

    columns = []
    for i, c in enumerate(_pick(need(raw, "columns", "the table"), profile)):
        _check_keys(c, COLUMN_FIELDS, f"field of columns[{i}]", path)
        columns.append(Column(id=need(c, "id", f"columns[{i}]"), label=c.get("label", c["id"]), metric=c.get("metric"),
                              fmt=c.get("fmt", "{:.3g}")))
    col_ids = {c.id for c in columns}

    def make_run(rr: Mapping[str, Any], where_run: str) -> RunSpec:
        merged = {**defaults, **{k: v for k, v in prof.items() if k != "params" and k != "task_args"}, **rr}
        params = {**defaults.get("params", {}), **prof.get("params", {}), **rr.get("params", {})}
        task_args = {**defaults.get("task_args", {}), **prof.get("task_args", {}), **rr.get("task_args", {})}
        bad = set(merged) - RUN_FIELDS
        if bad:
            raise TableSpecError(f"{path}: {where_run} has unknown field(s) {sorted(bad)}")
        return RunSpec.make(need(merged, "task", where_run), need(merged, "system", where_run), profile,
                            split=merged.get("split", "test"), limit=merged.get("limit"),
                            seed=merged.get("seed", 0), task_args=task_args, params=params)

    rows = []
    for i, r in enumerate(need(raw, "rows", "the table")):
        rows.append(_row(r, f"rows[{i}]", profile, path, col_ids, make_run, produce_default, need))
    row_ids = [r.id for r in rows]
    if len(set(row_ids)) != len(row_ids):
        raise TableSpecError(f"{path}: duplicate row ids")

    def tol_map(name: str) -> dict[str, Tolerance]:
        out = {}
        for cid, t in (_pick(raw.get(name) or {}, profile)).items():
            # the gate also takes one cell ("row.column"), e.g. a measured wall-clock cell in a column of
            # deterministic ones, so that the column's exact tolerance need not be loosened for it
            rid, dot, col = str(cid).partition(".")
            cell = name == "gate" and dot and rid in row_ids and col in col_ids
            if cid not in col_ids and not cell:
                raise TableSpecError(f"{path}: {name} names unknown column {cid!r}"
                                     + (" (or row.column)" if name == "gate" else ""))
            out[cid] = _tolerance(f"{path}: {name}.{cid}", t)
        return out

    claims = []
    for i, c in enumerate(raw.get("claims") or []):
        _check_keys(c, CLAIM_FIELDS, f"field of claims[{i}]", path)
        check = _pick(need(c, "check", f"claims[{i}]"), profile)
        _check_keys(check, CHECK_FIELDS, f"field of claims[{i}].check", path)
        if check.get("op") not in CLAIM_OPS:
            raise TableSpecError(f"{path}: claims[{i}].check.op must be one of {CLAIM_OPS}, got {check.get('op')!r}")
        claims.append(Claim(id=need(c, "id", f"claims[{i}]"), text=need(c, "text", f"claims[{i}]"), check=check,
                            gate=bool(_pick(c.get("gate", True), profile))))

    contradictions = _contradictions(raw.get("contradictions"), path)
    rows, title, cell_marks = _place_marks(contradictions, rows, col_ids, head["title"], path)
    head["title"] = title
    return TableSpec(**head, columns=tuple(columns), rows=tuple(rows), tolerances=tol_map("tolerances"),
                     gate=tol_map("gate"), claims=tuple(claims), contradictions=contradictions, cell_marks=cell_marks,
                     notes=_notes(head, contradictions, raw.get("notes"), profile))


def _row(r: Mapping[str, Any], where: str, profile: str, path: Path, col_ids: set[str], make_run, produce_default,
         need) -> Row:
    _check_keys(r, ROW_FIELDS, f"field of {where}", path)
    rid = need(r, "id", where)
    skip = _pick(r.get("skip") or [], profile)
    unavailable = str(skip) if isinstance(skip, str) else None
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
    skip_cols = [] if unavailable else list(skip)
    for key in list(paper) + list(r.get("derived") or {}) + skip_cols + list(cell_runs):
        if key not in col_ids:
            raise TableSpecError(f"{path}: {where} ({rid}) names unknown column {key!r}")
    label = str(_pick(r.get("label", rid), profile))
    try:
        label = label.format(**label_vars)
    except (KeyError, IndexError) as e:
        raise TableSpecError(f"{path}: {where}.label refers to {e} which the run does not set") from e
    artifact = _pick(r.get("artifact"), profile)
    produce = None
    if r.get("produce") is not None or (artifact and produce_default is not None):
        produce = _merge(produce_default, _pick(r.get("produce"), profile))
        if not isinstance(produce, Mapping) or not isinstance(produce.get("kind"), str):
            raise TableSpecError(f"{path}: {where}.produce must be a mapping with a 'kind' (e.g. lm-eval)")
        if not artifact:
            raise TableSpecError(f"{path}: {where}.produce needs the row's 'artifact' (the record it makes)")
    if unavailable:
        label = f"{label} (not run: {unavailable})"
        run, artifact, cell_runs = None, None, {}
    return Row(id=rid, label=label, run=run, artifact=artifact, paper=paper,
               derived=_pick(r.get("derived") or {}, profile), skip=tuple(skip_cols), cell_runs=cell_runs,
               vars=row_vars, produce=produce, unavailable=unavailable)


def _opt_str(value: Any, path: Path, field_name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise TableSpecError(f"{path}: {field_name} must be a non-empty string")
    return value.strip()


def _definitions(raw: Any, profile: str, path: Path) -> tuple[tuple[str, str], ...]:
    raw = _pick(raw or {}, profile)
    if not isinstance(raw, Mapping):
        raise TableSpecError(f"{path}: definitions must be a mapping name -> text")
    out = []
    for name, text in raw.items():
        if not isinstance(text, str) or not text.strip():
            raise TableSpecError(f"{path}: definitions.{name} must be a non-empty string")
        out.append((str(name), text.strip()))
    return tuple(out)


def _contradictions(raw: Any, path: Path) -> tuple[Contradiction, ...]:
    out = []
    for i, c in enumerate(raw or []):
        if not isinstance(c, Mapping) or not {"id", "text", "where"} <= set(c) or set(c) - {"id", "text", "where"}:
            raise TableSpecError(f"{path}: contradictions[{i}] needs exactly id, text and where (cells, rows or "
                                 f"'table')")
        where = (c["where"],) if isinstance(c["where"], str) else tuple(c["where"])
        out.append(Contradiction(id=str(c["id"]), text=str(c["text"]).strip(), where=where, mark=f"[C{i + 1}]"))
    return tuple(out)


def _place_marks(contradictions: tuple[Contradiction, ...], rows: list[Row], col_ids: set[str], title: str,
                 path: Path) -> tuple[list[Row], str, dict[str, tuple[str, ...]]]:
    """Put each contradiction's marker next to what it affects: a cell, a row label or the title. A cell not
    filled at this profile passes its marker to its row label, so no marker is lost."""
    by_id = {r.id: r for r in rows}
    row_marks: dict[str, list[str]] = {}
    cell_marks: dict[str, list[str]] = {}
    for c in contradictions:
        for w in c.where:
            rid, _, cid = w.partition(".")
            if w == "table":
                title = f"{title} {c.mark}"
            elif rid not in by_id or (cid and cid not in col_ids):
                raise TableSpecError(f"{path}: contradiction {c.id} names {w!r}, which is not a row or row.column "
                                     f"of this table")
            elif cid and cid not in by_id[rid].skip:
                cell_marks.setdefault(w, []).append(c.mark)
            elif c.mark not in row_marks.get(rid, []):
                row_marks.setdefault(rid, []).append(c.mark)
    rows = [replace(r, label=f"{r.label} {' '.join(row_marks[r.id])}") if r.id in row_marks else r for r in rows]
    return rows, title, {k: tuple(v) for k, v in cell_marks.items()}


def _notes(head: Mapping[str, Any], contradictions: tuple[Contradiction, ...], raw_notes: Any,
           profile: str) -> tuple[str, ...]:
    """What the report prints under the table: what is missing, the definitions, the paper's contradictions,
    then the free-form notes."""
    out = []
    if head.get("not_reproducible"):
        out.append(f"Not reproducible from the paper's released artefacts: {head['not_reproducible']}")
    out += [f"Definition — {name}: {text}" for name, text in head.get("definitions") or ()]
    out += [f"{c.mark} The paper contradicts itself: {c.text}" for c in contradictions]
    out += [str(n) for n in _pick(list(raw_notes or ()), profile)]
    return tuple(out)
