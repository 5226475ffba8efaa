"""What a reproduction package provides to the suite: its tables, how to prepare its models, and its plan.

The plan answers "what would ``repro reproduce`` do, and what is missing?" before anything runs
(``repro reproduce --dry-run``). A paper plug-in may give its own ``plan`` function; without one,
:func:`default_plan` lists the tables' runs and checks their data sets through the tasks.

Plan interface for plug-in authors (``Paper.plan(profile, ctx) -> list[PlannedStep]``):

* one :class:`PlannedStep` per unit of work, in execution order: prepare steps first (``kind="prepare"``:
  training, locating checkpoints, lm-eval calls, measurements written as artifact records), then one step
  per run spec (``kind="run"``, ``run_hash`` = ``RunSpec.hash`` so ``reproduce`` can skip a run whose inputs
  are missing);
* ``missing`` lists every input the step lacks as :class:`Missing` ``(thing, how to get it)``; ``thing`` is a
  stable phrase (``checkpoint facebook/layerskip-llama2-7B``, ``data set xsum``) so the same input needed by
  several steps is reported once. An input that an earlier step of the plan produces is *not* missing;
* ``checkpoint``, ``dataset``, ``samples`` (None = all or unknown), ``device`` and ``gpu_hours`` (a rough
  estimate, None = not estimated) describe the step for the plan table;
* planning must be cheap and offline: check that files exist, never load a model or download anything.

Build run steps with :func:`run_steps` (it checks data through each task's ``data_files`` and takes a
``locate_model`` callback for the plug-in's checkpoint rules and an ``estimate`` callback for GPU-hours).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from suite.compare import TableResult
from suite.records import artifact_record_is_current, write_artifact_record  # noqa: F401  (re-exported for plug-ins)
from suite.tables import TableSpec, load_table


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


@dataclass(frozen=True)
class Missing:
    """An input a step needs and does not have, with how to get it."""

    thing: str
    """Stable phrase, e.g. ``checkpoint meta-llama/Llama-2-7b-hf`` or ``data set xsum``."""
    how: str
    """What to run or download, in one line."""


@dataclass(frozen=True)
class PlannedStep:
    """One unit of work of ``repro reproduce``, described before it runs."""

    what: str
    """Run spec label, or a prepare step such as ``lm-eval boolq -> lmeval-llama2-7b-base-l32``."""
    kind: str = "run"
    """``run`` (a run spec) or ``prepare`` (training, locating checkpoints, lm-eval, measurements)."""
    checkpoint: str | None = None
    dataset: str | None = None
    samples: int | None = None
    """Examples evaluated; None = all of them, or not known without loading the data."""
    device: str = "cpu"
    gpu_hours: float | None = None
    """Rough estimate; None = not estimated (e.g. a CPU step)."""
    missing: tuple[Missing, ...] = ()
    run_hash: str | None = None
    """``RunSpec.hash`` of a run step, so ``reproduce`` can skip exactly the runs whose inputs are missing."""
    tables: tuple[str, ...] = ()
    """Ids of the tables that read this step's result."""


ModelLocator = Callable[[str], "Missing | None"]
Estimator = Callable[[Any, "int | None"], "float | None"]


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
    plan: Callable[[str, PrepareContext], list[PlannedStep]] | None = None
    """What ``reproduce`` would do at a profile and what is missing (see the module docstring); default:
    :func:`default_plan`."""
    other_tables: Mapping[str, str] = field(default_factory=dict)
    """The paper's tables that have no spec here, each with why (e.g. training settings, not results), so a report
    can account for every table of the paper."""

    def planned(self, profile: str, ctx: PrepareContext) -> list[PlannedStep]:
        return self.plan(profile, ctx) if self.plan else default_plan(self, profile, ctx)

    def coverage(self, every: Sequence[TableSpec]) -> str:
        """One paragraph for the report: which of the paper's tables are regenerated at this profile and why the
        others are not."""
        done = [t.title.split(":")[0] for t in every if t.skipped is None]
        parts = [f"Regenerated at this profile: {', '.join(done)}." if done else "Nothing is regenerated at this "
                 "profile."]
        skipped = [f"{t.title} ({t.skipped})" for t in every if t.skipped]
        if skipped:
            parts.append("Not evaluated at this profile: " + "; ".join(skipped) + ".")
        if self.other_tables:
            parts.append("No table spec: " + "; ".join(f"{k} ({v})" for k, v in self.other_tables.items()) + ".")
        return "\n\n".join(parts)

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


def default_plan(paper: Paper, profile: str, ctx: PrepareContext) -> list[PlannedStep]:
    """A plan for a paper without its own: one step per run of its tables, data sets checked through the tasks."""
    steps = []
    if paper.prepare:
        steps.append(PlannedStep(what=f"prepare {paper.name} ({profile})", kind="prepare", device=ctx.device))
    return steps + run_steps(paper.tables(profile), ctx)


def run_steps(specs: Iterable[TableSpec], ctx: PrepareContext, *, locate_model: ModelLocator | None = None,
              estimate: Estimator | None = None) -> list[PlannedStep]:
    """One step per distinct run spec of ``specs``: its data set checked (offline, through the task's
    ``data_files``), its ``model`` param checked by ``locate_model``, its cost by ``estimate(run, samples)``."""
    tables: dict[str, list[str]] = {}
    runs: dict[str, Any] = {}
    for spec in specs:
        for run in spec.runs():
            runs.setdefault(run.hash, run)
            tables.setdefault(run.hash, []).append(spec.id)
    data_cache: dict[tuple, tuple[int | None, Missing | None]] = {}
    steps = []
    for h, run in runs.items():
        samples, data_missing = _check_data(run, ctx.data_root, data_cache)
        model = run.params_dict.get("model")
        missing = [m for m in (data_missing, locate_model(str(model)) if locate_model and model else None) if m]
        steps.append(PlannedStep(what=run.label(), kind="run", checkpoint=None if model is None else str(model),
                                 dataset=f"{run.task}/{run.split}", samples=samples,
                                 device=str(run.params_dict.get("device") or ctx.device),
                                 gpu_hours=estimate(run, samples) if estimate else None, missing=tuple(missing),
                                 run_hash=h, tables=tuple(dict.fromkeys(tables[h]))))
    return steps


def _check_data(run: Any, data_root: Path | None, cache: dict) -> tuple[int | None, Missing | None]:
    """(number of examples the run evaluates, or None; what is missing, or None), read offline from the task."""
    from suite.data import DataMissing
    from suite.registry import TASKS

    key = (run.task, run.task_args, run.split)
    if key not in cache:
        try:
            task = TASKS.get(run.task)(**run.task_args_dict)
            task.data_files(run.split, data_root)
            cache[key] = (sum(1 for _ in task.examples(run.split, data_root)), None)
        except (DataMissing, FileNotFoundError) as e:
            cache[key] = (None, Missing(f"data set {run.task}", str(e)))
    total, missing = cache[key]
    if total is None:
        return run.limit, missing
    return (total if run.limit is None else min(total, run.limit)), missing


def blocked_runs(steps: Iterable[PlannedStep]) -> set[str]:
    """Hashes of the runs that cannot run because an input is missing."""
    return {s.run_hash for s in steps if s.missing and s.run_hash}


def format_plan(steps: Sequence[PlannedStep]) -> str:
    """The plan as a fixed-width table, one line per step, and a total of the estimated GPU-hours."""
    head = ("#", "step", "checkpoint", "data", "n", "device", "GPU-h", "status")
    rows = [head]
    for i, s in enumerate(steps, 1):
        samples = "all" if s.samples is None else str(s.samples)
        rows.append((str(i), s.what, s.checkpoint or "-", s.dataset or "-", samples,
                     s.device, "-" if s.gpu_hours is None else f"{s.gpu_hours:.2f}",
                     "ok" if not s.missing else "MISSING " + ", ".join(m.thing for m in s.missing)))
    widths = [min(max(len(r[i]) for r in rows), 110 if i == 1 else 44) for i in range(len(head) - 1)]
    lines = ["  ".join(c[:w].ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1] for r in rows]
    total = sum(s.gpu_hours or 0.0 for s in steps)
    lines.append(f"{len(steps)} steps; estimated {total:.1f} GPU-hours in all (rough; see each paper's notes)")
    return "\n".join(lines)


def missing_message(steps: Iterable[PlannedStep]) -> str:
    """ONE message naming every missing input once, with how to get it and how many steps wait for it."""
    need: dict[str, tuple[str, int]] = {}
    for s in steps:
        for m in s.missing:
            how, n = need.get(m.thing, (m.how, 0))
            need[m.thing] = (how, n + 1)
    if not need:
        return ""
    lines = [f"missing {len(need)} input(s):"]
    lines += [f"  - {thing} (needed by {n} step{'s' if n > 1 else ''}): {how}" for thing, (how, n) in need.items()]
    return "\n".join(lines)
