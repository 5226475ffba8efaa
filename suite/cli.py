"""``repro``: list, run, reproduce, report, gate. Every command takes ``--profile``."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from suite import cli_help, data_cli, pinning
from suite import gate as gate_mod
from suite.compare import TableResult, evaluate_table
from suite.data import DataMissing, data_root
from suite.devices import DTYPES, resolve_device, resolve_dtype
from suite.locks import LockBusy, exclusive
from suite.papers import Paper, PrepareContext, blocked_runs, describe, format_plan, missing_message
from suite.provision import ensure_data
from suite.registry import PAPERS, PROFILE_DTYPE, PROFILES, SYSTEMS, TASKS, RegistryError
from suite.report import write_report
from suite.runner import execute, runs_root
from suite.sandbox import SandboxUnavailable
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
    # dot-names are the lock file and half-written temporaries, never model aliases
    return {p.name: p for p in sorted(d.iterdir()) if not p.name.startswith(".")} if d.is_dir() else {}


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


def _report(name: str, paper: Paper, profile: str, root: Path, out: Path,
            allow_dirty: bool = False) -> list[TableResult]:
    every = paper.all_tables(profile)  # parsed once: evaluated tables and the ones skipped at this profile
    specs = [t for t in every if t.skipped is None]
    results = [evaluate_table(s, root) for s in specs]
    out_dir = out / name / profile
    pinning.require_clean(out_dir, "a report", allow_dirty)
    with exclusive(out_dir, "this report"):
        figures = paper.figures(results, root, profile, out_dir / "figures") if paper.figures else []
        notes = paper.notes.get(profile, "") + "\n\n" + paper.coverage(every)
        files = write_report(out_dir, f"{paper.title} — reproduction report", profile, specs, results, figures,
                             notes.strip())
    print(f"report {name}/{profile}: " + ", ".join(str(p) for p in files.values()))
    return results


def cmd_reproduce(a: argparse.Namespace) -> int:
    device = resolve_device(a.device)
    dtype = resolve_dtype(a.dtype, device, PROFILE_DTYPE.get(a.profile, "auto"))
    before = os.environ.get("REPRO_DTYPE")
    os.environ["REPRO_DTYPE"] = dtype  # trainers run in spawned processes: they resolve the same precision
    try:
        return _reproduce(a, device, dtype)
    finally:
        if before is None:
            os.environ.pop("REPRO_DTYPE", None)
        else:
            os.environ["REPRO_DTYPE"] = before


def _reproduce(a: argparse.Namespace, device: str, dtype: str) -> int:
    root = runs_root(a.runs_dir)
    droot = data_root(a.data_root)
    if a.dry_run:
        return _dry_run(a, root, droot, device, dtype)
    t0 = time.perf_counter()
    skipped_steps = []
    for name, _ in _papers(a.paper):  # refuse before training, not after, when the report could not be written
        pinning.require_clean(Path(a.out) / name / a.profile, "a report", a.allow_dirty)
    ensure_data(a.paper, a.profile, a.data_root)  # fetch what is missing (or list it all, offline) before any training
    for name, paper in _papers(a.paper):
        specs = paper.tables(a.profile)  # validate every spec before spending time on training
        ctx = PrepareContext(a.profile, droot, root / a.profile / "artifacts", force=a.force, device=device,
                             dtype=dtype)
        plan = paper.planned(a.profile, ctx)
        blocked = blocked_runs(plan)
        skipped_steps += [s for s in plan if s.missing]
        artifacts: dict[str, Path] = {}
        # One preparer per artifacts folder: a second `reproduce` of the same profile would retrain the models
        # this one's runs are reading.
        with exclusive(ctx.artifacts_dir, "the prepared models of this profile"):
            if paper.prepare:
                print(f"[{name}] preparing models for profile {a.profile} ...", flush=True)
                artifacts.update(paper.prepare(ctx))
            artifacts = {**_artifacts(root, a.profile), **artifacts}
            runs = {r.hash: r for s in specs for r in s.runs()}
            for i, spec in enumerate(runs.values(), 1):
                if spec.hash in blocked:
                    print(f"[{name}] run {i}/{len(runs)}: {spec.label()}: skipped, inputs missing", flush=True)
                    continue
                print(f"[{name}] run {i}/{len(runs)}: {spec.label()}", flush=True)
                execute(spec, root=root, data_root=droot, artifacts=artifacts, force=a.force, device=device,
                        dtype=dtype)
        _report(name, paper, a.profile, root, Path(a.out), a.allow_dirty)
    print(f"reproduce {a.paper} ({a.profile}) done in {time.perf_counter() - t0:.0f}s")
    status = _gate(a) if a.gate else 0
    if skipped_steps:
        print(f"reproduce: {len(skipped_steps)} step(s) skipped; {missing_message(skipped_steps)}", file=sys.stderr)
        return max(status, 1)
    return status


def _dry_run(a: argparse.Namespace, root: Path, droot: Path | None, device: str, dtype: str) -> int:
    """Print what ``reproduce`` would do and everything it lacks; exit 1 when anything is missing."""
    steps = []
    for name, paper in _papers(a.paper):
        ctx = PrepareContext(a.profile, droot, root / a.profile / "artifacts", force=a.force, device=device,
                             dtype=dtype)
        plan = paper.planned(a.profile, ctx)
        print(f"plan {name}/{a.profile}:\n{format_plan(plan)}\n")
        steps += plan
    message = missing_message(steps)
    print(message or "nothing is missing: `repro reproduce` without --dry-run runs every step above")
    return 1 if message else 0


def cmd_report(a: argparse.Namespace) -> int:
    root = runs_root(a.runs_dir)
    for name, paper in _papers(a.paper):
        _report(name, paper, a.profile, root, Path(a.out), a.allow_dirty)
    return 0


def _gate(a: argparse.Namespace) -> int:
    root = runs_root(a.runs_dir)
    baselines = Path(a.baselines)
    failures: list[str] = []
    for name, paper in _papers(a.paper):
        specs, results = _evaluate(paper, a.profile, root)
        path = gate_mod.baseline_path(baselines, a.profile, name)
        if getattr(a, "update_baselines", False):
            pinning.require_clean(path, "a baseline", a.allow_dirty)
            with exclusive(path.parent, "the baselines of this profile"):
                gate_mod.write_baseline(path, gate_mod.snapshot(specs, results, root, pinning.pin_meta(a.allow_dirty)))
            print(f"gate: wrote baseline {path}" + (f" ({pinning.DIRTY_WARNING})" if pinning.tree_is_dirty() else ""))
            continue
        baseline = gate_mod.load_baseline(path)
        if baseline["meta"].get("warning"):
            print(f"gate: {path}: {baseline['meta']['warning']}")
        regs = gate_mod.check(specs, results, baseline, root)
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
        s.add_argument("--allow-dirty", action="store_true", help="write committed reports/baselines from "
                       "uncommitted code anyway, marked as such in the report header and the baseline")
        if name == "reproduce":
            s.add_argument("--force", action="store_true", help="retrain and rerun everything")
            s.add_argument("--gate", action="store_true", help="run the gate afterwards")
            s.add_argument("--dry-run", action="store_true", help="print the plan (steps, checkpoints, data, "
                           "estimated GPU-hours) and every missing input with how to get it; exit 1 if any is missing")
            _device_args(s)
        if name == "gate":
            s.add_argument("--update-baselines", action="store_true",
                           help="rewrite the pinned baselines from the current results (deliberately)")
        s.set_defaults(fn=fn)
    data_cli.add_parser(sub)
    cli_help.add_epilogs(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return args.fn(args)
    except BrokenPipeError:
        # `repro ... | head` closed the pipe: stop quietly, like any Unix filter (exit 128 + SIGPIPE), and point
        # stdout at /dev/null so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (RegistryError, TableSpecError, DataMissing, FileNotFoundError, ValueError, SandboxUnavailable) as e:
        print(f"repro: error: {e}", file=sys.stderr)
        return 2
    except LockBusy as e:
        print(f"repro: busy: {e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print("repro: interrupted; finished examples are recorded and the run resumes where it stopped",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
