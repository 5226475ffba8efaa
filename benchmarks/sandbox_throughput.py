"""HumanEval oracle programs per second: the old way (one bare subprocess at a time, verdict
from the exit status, no isolation) vs the sandbox one at a time vs the sandbox's pool, in
one run, side by side. The goal: the pooled sandbox takes at most 2x the old wall time.

    python benchmarks/sandbox_throughput.py [--workers N] [--limit 164] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from suite.interfaces import Example  # noqa: E402
from suite.sandbox import Limits, default_workers, require_isolation, run_many  # noqa: E402
from suite.tasks.humaneval import HumanEvalTask  # noqa: E402

_OLD_RUNNER = "import sys; exec(compile(sys.stdin.read(), 'program', 'exec'))"


def _old_style(task: HumanEvalTask, examples: list[Example]) -> list[bool]:
    """What the suite did before: the whole program on stdin of `python -I`, passed = exit status 0."""
    verdicts = []
    for ex in examples:
        with tempfile.TemporaryDirectory(prefix="repro-bench-") as cwd:
            proc = subprocess.run([sys.executable, "-I", "-c", _OLD_RUNNER], cwd=cwd, text=True, capture_output=True,
                                  input=task.program(ex, ex.data["canonical_solution"]), timeout=10,
                                  env={"PATH": "/usr/bin:/bin", "HOME": cwd})
        verdicts.append(proc.returncode == 0)
    return verdicts


def _sandboxed(task: HumanEvalTask, examples: list[Example], workers: int) -> list[bool]:
    programs = [task.sandboxed(ex, ex.data["canonical_solution"]) for ex in examples]
    return [r.passed for r in run_many(programs, limits=Limits(timeout_s=10), workers=workers)]


def measure(limit: int, workers: int) -> dict[str, float | int | str]:
    task = HumanEvalTask()
    examples = list(task.examples("test", None))[:limit]
    isolation = require_isolation()
    rows: dict[str, float | int | str] = {"problems": len(examples), "workers": workers, "cpus": os.cpu_count() or 1,
                                          "isolation": isolation.kind}
    runs = (("old", lambda: _old_style(task, examples)), ("sandbox_sequential", lambda: _sandboxed(task, examples, 1)),
            ("sandbox_pooled", lambda: _sandboxed(task, examples, workers)))
    for name, fn in runs:
        start = time.perf_counter()
        passed = fn()
        seconds = time.perf_counter() - start
        rows[f"{name}_s"], rows[f"{name}_per_s"], rows[f"{name}_passed"] = seconds, len(examples) / seconds, sum(passed)
    rows["pooled_time_vs_old"] = rows["sandbox_pooled_s"] / rows["old_s"]
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=default_workers())
    p.add_argument("--limit", type=int, default=164)
    p.add_argument("--json", action="store_true")
    a = p.parse_args(argv)
    r = measure(a.limit, a.workers)
    if a.json:
        print(json.dumps(r, indent=1))
        return
    print(f"{r['problems']} HumanEval oracle programs, {r['cpus']} CPUs, isolation: {r['isolation']}"
          " (noisy: shared CPU)")
    print(f"  old: bare subprocess, sequential  : {r['old_per_s']:6.1f} problems/s  {r['old_s']:6.1f} s"
          f"  passed {r['old_passed']}")
    print(f"  sandbox, sequential               : {r['sandbox_sequential_per_s']:6.1f} problems/s"
          f"  {r['sandbox_sequential_s']:6.1f} s  passed {r['sandbox_sequential_passed']}")
    print(f"  sandbox, pool of {r['workers']:<2d}               : {r['sandbox_pooled_per_s']:6.1f} problems/s"
          f"  {r['sandbox_pooled_s']:6.1f} s  passed {r['sandbox_pooled_passed']}")
    verdict = "met" if r["pooled_time_vs_old"] <= 2 else "NOT met"
    print(f"  pooled sandbox time / old time = {r['pooled_time_vs_old']:.2f} (goal <= 2: {verdict})")


if __name__ == "__main__":
    main()
