"""The regression gate: fresh table values vs pinned baselines, with per-column tolerances.

Like detectron2's ``verify_results``: expected values with tolerances, a
copy-pasteable summary, exit status 1 naming every regressed cell. A claim that
held in the baseline and no longer holds is a regression too. Changes in either
direction count: a scorer that suddenly passes everything is as broken as one
that fails everything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite.compare import TableResult
from suite.tables import TableSpec, Tolerance

DEFAULT_GATE = Tolerance(abs=1e-9)


@dataclass
class Regression:
    where: str
    message: str


def baseline_path(baselines_dir: Path, profile: str, paper: str) -> Path:
    return baselines_dir / profile / f"{paper}.json"


def snapshot(specs: list[TableSpec], results: list[TableResult]) -> dict[str, Any]:
    """Baseline content: every cell value, and the claims the gate watches (not wall-clock ones)."""
    gated = {s.id: {c.id for c in s.claims if c.gate} for s in specs}
    return {r.table: {"cells": {k: c.ours for k, c in sorted(r.cells.items())},
                      "claims": {c.id: c.holds for c in r.claims if c.id in gated.get(r.table, set())}}
            for r in results}


def check(specs: list[TableSpec], results: list[TableResult], baseline: dict[str, Any]) -> list[Regression]:
    out: list[Regression] = []
    by_id = {s.id: s for s in specs}
    fresh = {r.table: r for r in results}
    for table_id, base in sorted(baseline.items()):
        spec, res = by_id.get(table_id), fresh.get(table_id)
        if spec is None or res is None:
            out.append(Regression(table_id, "table is in the baseline but was not evaluated"))
            continue
        for key, expected in sorted(base.get("cells", {}).items()):
            col = key.split(".", 1)[1]
            tol = spec.gate.get(col, DEFAULT_GATE)
            if tol.skip or expected is None:
                continue
            cell = res.cells.get(key)
            got = cell.ours if cell else None
            where = f"{table_id}:{key}"
            if got is None:
                out.append(Regression(where, f"baseline {expected:.6g}, now not run"))
            elif not tol.within(got, expected):
                out.append(Regression(where, f"baseline {expected:.6g}, now {got:.6g} "
                                             f"(Δ {got - expected:+.4g}; allowed {tol.describe()})"))
        for cid, held in sorted(base.get("claims", {}).items()):
            now = next((c for c in res.claims if c.id == cid), None)
            if held and (now is None or not now.holds):
                detail = now.detail if now else "claim missing"
                out.append(Regression(f"{table_id}:claim:{cid}", f"held in the baseline, now fails ({detail})"))
    return out


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{path}: no pinned baseline; create it deliberately with "
                                f"`repro gate --update-baselines`") from e
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: baseline is not valid JSON ({e.msg})") from e
