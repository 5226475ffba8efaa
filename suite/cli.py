"""``repro``: list, run, reproduce, report, gate. Every command takes ``--profile``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from suite import gate as gate_mod
from suite.compare import TableResult, evaluate_table
from suite.data import DataMissing, data_root
from suite.devices import DTYPES, resolve_device, resolve_dtype
from suite.papers import Paper, PrepareContext, describe
from suite.registry import PAPERS, PROFILES, SYSTEMS, TASKS, RegistryError
from suite.report import write_report
from suite.runner import execute, runs_root
from suite.spec import RunSpec
from suite.tables import TableSpec, TableSpecError

REPO = Path(__file__).resolve().parent.parent


def _parse_kv(items: Sequence[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"repro: --{what} {item!r}: expected KEY=VALUE")
        out[key] = yaml.safe_load(value)
    return out


def _papers(name: str) -> list[tuple[str, Paper]]:
    names = PAPERS.names() if name == "all" else [name]
    return [(n, PAPERS.get(n)) for n in names]


def _artifacts(root: Path, profile: str) -> dict[str, Path]:
    d = root / profile / "artifacts"
    return {p.name: p for p in sorted(d.iterdir())} if d.is_dir() else {}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", choices=PROFILES, default="smoke", help="scale to run at (default: smoke)")
    p.add_argument("--data-root", default=None, help="data directory (default: $REPRO_DATA_DIR)")
    p.add_argument("--runs-dir", default=None, help="where run records live (default: $REPRO_RUNS_DIR or ./runs)")


def _device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default=None, help="auto (default, or $REPRO_DEVICE): CUDA when present | cpu | "
                   "cuda | cuda:N")
    p.add_argument("--dtype", default=None, choices=DTYPES, help="auto (default, or $REPRO_DTYPE): bf16 where the "
                   "hardware computes it natively, else float32")


def cmd_list(a: argparse.Namespace) -> int:
    what = a.what
    if what in ("all", "tasks"):
        print("tasks:    " + ", ".join(TASKS.names()))
    if what in ("all", "systems"):
        print("systems:  " + ", ".join(SYSTEMS.names()))
    if what in ("all", "profiles"):
        print("profiles: " + ", ".join(PROFILES))
    if what in ("all", "papers", "tables"):
        for name in PAPERS.names():
            try:
                d = describe(PAPERS.get(name))
            except ImportError as e:  # a reproduction whose optional dependencies are missing
                print(f"paper {name}: unavailable ({e})")
                continue
            print(f"paper {name}: {d['title']} (arXiv {d['arxiv']})")
            if what != "papers":
                for t in d["tables"]:
                    print(f"  table {t}")
    return 0


def cmd_run(a: argparse.Namespace) -> int:
    spec = RunSpec.make(a.task, a.system, a.profile, split=a.split, limit=a.limit, seed=a.seed,
                        task_args=_parse_kv(a.task_arg, "task-arg"), params=_parse_kv(a.param, "param"))
    root = runs_root(a.runs_dir)
    res = execute(spec, root=root, data_root=data_root(a.data_root), artifacts=_artifacts(root, a.profile),
                  force=a.force, device=a.device, dtype=a.dtype)
    print(f"{'reused' if res.reused else 'finished'} {spec.label()} -> {res.path}")
    for name, m in sorted(res.metrics["metrics"].items()):
        ci = f"  95% CI [{m['ci95'][0]:.4g}, {m['ci95'][1]:.4g}]" if m.get("ci95") else ""
        print(f"  {name:>20s} = {m['value']:.4g}  (n={m['n']}){ci}")
    return 0


def _evaluate(paper: Paper, profile: str, root: Path) -> tuple[list[TableSpec], list[TableResult]]:
    specs = paper.tables(profile)
    return specs, [evaluate_table(s, root) for s in specs]


def _report(name: str, paper: Paper, profile: str, root: Path, out: Path) -> list[TableResult]:
    every = paper.all_tables(profile)  # parsed once: evaluated tables and the ones skipped at this profile
    specs = [t for t in every if t.skipped is None]
    results = [evaluate_table(s, root) for s in specs]
    out_dir = out / name / profile
    figures = paper.figures(results, root, profile, out_dir / "figures") if paper.figures else []
    notes = paper.notes.get(profile, "")
    skipped = [t for t in every if t.skipped]
    if skipped:
        notes += "\n\nNot evaluated at this profile: " + "; ".join(f"{t.title} ({t.skipped})" for t in skipped) + "."
    files = write_report(out_dir, f"{paper.title} — reproduction report", profile, specs, results, figures,
                         notes.strip())
    print(f"report {name}/{profile}: " + ", ".join(str(p) for p in files.values()))
    return results


def cmd_reproduce(a: argparse.Namespace) -> int:
    root = runs_root(a.runs_dir)
    droot = data_root(a.data_root)
    device = resolve_device(a.device)
    dtype = resolve_dtype(a.dtype, device)
    t0 = time.perf_counter()
    for name, paper in _papers(a.paper):
        specs = paper.tables(a.profile)  # validate every spec before spending time on training
        artifacts: dict[str, Path] = {}
        if paper.prepare:
            print(f"[{name}] preparing models for profile {a.profile} ...", flush=True)
            ctx = PrepareContext(a.profile, droot, root / a.profile / "artifacts", force=a.force, device=device,
                                 dtype=dtype)
            ctx.artifacts_dir.mkdir(parents=True, exist_ok=True)
            artifacts.update(paper.prepare(ctx))
        artifacts = {**_artifacts(root, a.profile), **artifacts}
        runs = {r.hash: r for s in specs for r in s.runs()}
        for i, spec in enumerate(runs.values(), 1):
            print(f"[{name}] run {i}/{len(runs)}: {spec.label()}", flush=True)
            execute(spec, root=root, data_root=droot, artifacts=artifacts, force=a.force, device=device, dtype=dtype)
        _report(name, paper, a.profile, root, Path(a.out))
    print(f"reproduce {a.paper} ({a.profile}) done in {time.perf_counter() - t0:.0f}s")
    if a.gate:
        return _gate(a)
    return 0


def cmd_report(a: argparse.Namespace) -> int:
    root = runs_root(a.runs_dir)
    for name, paper in _papers(a.paper):
        _report(name, paper, a.profile, root, Path(a.out))
    return 0


def _gate(a: argparse.Namespace) -> int:
    root = runs_root(a.runs_dir)
    baselines = Path(a.baselines)
    failures: list[str] = []
    for name, paper in _papers(a.paper):
        specs, results = _evaluate(paper, a.profile, root)
        path = gate_mod.baseline_path(baselines, a.profile, name)
        if getattr(a, "update_baselines", False):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(gate_mod.snapshot(specs, results), indent=2, sort_keys=True) + "\n")
            print(f"gate: wrote baseline {path}")
            continue
        regs = gate_mod.check(specs, results, gate_mod.load_baseline(path))
        n_cells = sum(len(r.cells) for r in results)
        if regs:
            for reg in regs:
                failures.append(f"REGRESSION {name}/{a.profile} {reg.where}: {reg.message}")
        else:
            print(f"gate {name}/{a.profile}: OK ({n_cells} cells, {sum(len(r.claims) for r in results)} claims "
                  f"against {path})")
    for f in failures:
        print(f)
    if failures:
        print(f"gate: {len(failures)} regression(s); if intended, rerun with --update-baselines and commit "
              f"{baselines}/{a.profile}/")
        return 1
    return 0


def cmd_gate(a: argparse.Namespace) -> int:
    return _gate(a)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="repro", description="Reproduce paper tables, compare with the paper, gate "
                                "regressions.")
    sub = p.add_subparsers(dest="cmd", required=True)

    s = sub.add_parser("list", help="list tasks, systems, papers/tables and profiles")
    s.add_argument("what", nargs="?", default="all", choices=["all", "tasks", "systems", "tables", "papers",
                                                                "profiles"])
    s.set_defaults(fn=cmd_list)

    s = sub.add_parser("run", help="execute one run spec (resumable; reused when finished)")
    _common(s)
    s.add_argument("--task", required=True)
    s.add_argument("--system", required=True)
    s.add_argument("--split", default="test")
    s.add_argument("--limit", type=int, default=None, help="first N examples (default: all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--param", action="append", default=[], metavar="K=V", help="system parameter (repeatable)")
    s.add_argument("--task-arg", action="append", default=[], metavar="K=V", help="task option (repeatable)")
    s.add_argument("--force", action="store_true", help="discard an existing run and recompute")
    _device_args(s)
    s.set_defaults(fn=cmd_run)

    for name, fn, helptext in (("reproduce", cmd_reproduce, "prepare models, run every run a paper's tables "
                                "need, write the report"),
                               ("report", cmd_report, "render reports from stored run records"),
                               ("gate", cmd_gate, "compare results with pinned baselines; exit 1 on regression")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("paper", nargs="?", default="all", help="paper name or 'all' (default)")
        _common(s)
        s.add_argument("--out", default=str(REPO / "reports"), help="report directory (default: reports/)")
        s.add_argument("--baselines", default=str(REPO / "reports" / "baselines"))
        if name == "reproduce":
            s.add_argument("--force", action="store_true", help="retrain and rerun everything")
            s.add_argument("--gate", action="store_true", help="run the gate afterwards")
            _device_args(s)
        if name == "gate":
            s.add_argument("--update-baselines", action="store_true",
                           help="rewrite the pinned baselines from the current results (deliberately)")
        s.set_defaults(fn=fn)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (RegistryError, TableSpecError, DataMissing, FileNotFoundError, ValueError) as e:
        print(f"repro: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("repro: interrupted; finished examples are recorded and the run resumes where it stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
