"""Does the safety net catch real bugs? Plant one bug at a time in a copy of the repository and see what fails.

For each mutation: copy the working tree (tracked and untracked, not ignored files) once into a scratch folder,
apply the mutation with an exact-text edit that must match exactly once (a mutation whose code moved fails
loudly instead of silently testing nothing), run the tests named for it, then the smoke reproduction of its
paper and the gate against baselines pinned from the unmutated code; print which tests and which gate cells
caught it, or NOT CAUGHT. A control row (no mutation) must pass everything, or the catches mean nothing.

    python benchmarks/mutation_check.py --models-from runs   # reuse trained smoke models (not their runs)
    python benchmarks/mutation_check.py --only cache-crop --no-gate

Needs REPRO_DATA_DIR (the smoke profile reads real data). The trained smoke checkpoints of the unmutated copy
are reused when a mutation cannot change training (decoding, scoring); otherwise the paper is prepared again.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutation:
    key: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    paper: str | None = None
    """Paper whose smoke gate should see the bug (None: no smoke table can)."""
    reuse_artifacts: bool = True
    """The bug cannot change what the paper's prepare step trains or measures, so its artifacts are reused."""


MUTATIONS = (
    Mutation("exit-off-by-one", "off-by-one exit layer: early exit decodes with E-1 layers",
             "reproductions/layerskip/decoding.py",
             "            _exit_decode(steps, ids, out, exit_layer, s, generator)",
             "            _exit_decode(steps, ids, out, exit_layer - 1, s, generator)",
             ("tests/layerskip/test_decoding.py", "tests/layerskip/test_systems.py"), "layerskip"),
    Mutation("cache-crop", "no cache crop after a rejection: the position advances as if every draft was accepted",
             "reproductions/layerskip/decoding.py",
             "        pos += len(new)\n",
             "        pos += len(drafts) + 1\n",
             ("tests/layerskip/test_decoding.py", "tests/layerskip/test_systems.py"), "layerskip"),
    Mutation("rouge-variant", "wrong ROUGE variant: the task reports rougeLsum as rougeL",
             "suite/tasks/summarization.py",
             '"rougeL": rouge_n_f(pred, ref, "L"),',
             '"rougeL": rouge_lsum_f(output.text, example.data["reference"]),',
             ("tests/suite/test_summarization.py", "tests/suite/test_gate_pins.py"), "sanity"),
    Mutation("synset-swap", "swapped synset ids in CatLIP labels (dog <-> cat)",
             "reproductions/catlip/labels.py",
             "        off = self.index.first_sense(lemma)\n",
             '        off = self.index.first_sense({"dog": "cat", "cat": "dog"}.get(lemma, lemma))\n',
             ("tests/catlip/test_wordnet_labels.py", "tests/catlip/test_vocab.py"), "catlip", reuse_artifacts=False),
    Mutation("exit-status", "HumanEval scorer passes on exit status 0 (ignores the supervisor's pass report)",
             "suite/sandbox.py",
             "    passed, reason = _verdict(collected.report, nonce, proc.returncode, stderr)",
             '    passed, reason = proc.returncode == 0, "exit status"',
             ("tests/suite/sandbox", "tests/suite/test_humaneval.py"), "sanity"),
)


@dataclass
class Outcome:
    key: str
    what: str
    tests_failed: list[str] = field(default_factory=list)
    gate_cells: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def caught(self) -> bool:
        return bool(self.tests_failed or self.gate_cells)


def copy_tree(dest: Path) -> Path:
    """The working tree as git sees it (tracked + untracked, ignored files left out)."""
    out = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=REPO, capture_output=True,
                         check=True).stdout.decode()
    for rel in filter(None, out.split("\0")):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def check_patterns(tree: Path, mutations) -> None:
    bad = []
    for m in mutations:
        n = (tree / m.file).read_text().count(m.old)
        if n != 1:
            bad.append(f"{m.key}: {m.file} holds the pattern {n} times (need exactly 1): {m.old.strip()!r}")
    if bad:
        raise SystemExit("mutation_check: patterns do not match the code any more; update MUTATIONS:\n  "
                         + "\n  ".join(bad))


def _env(tree: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
            "PYTHONDONTWRITEBYTECODE": "1"}


def run_tests(tree: Path, tests, timeout: int) -> tuple[list[str], str]:
    cmd = [sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    p = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True, timeout=timeout)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", p.stdout, flags=re.M)
    if p.returncode not in (0, 1) and not failed:
        failed = [f"pytest exit {p.returncode}"]
    return failed, p.stdout[-3000:]


def repro(tree: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "suite.cli", *args], cwd=tree, env=_env(tree), capture_output=True,
                          text=True, timeout=timeout)


def pin_baselines(tree: Path, base_runs: Path, baselines: Path, papers, timeout: int,
                  models_from: Path | None) -> None:
    """Baselines from a fresh smoke reproduction of the unmutated copy. Only trained models and artifact records
    are taken from ``models_from``: its run folders may come from older code (runs are reused by spec and
    checkpoint identity, not by code version), and the baseline must describe exactly the copied code."""
    src = models_from / "smoke" / "artifacts" if models_from else None
    if src is not None and src.is_dir() and not (base_runs / "smoke" / "artifacts").exists():
        shutil.copytree(src, base_runs / "smoke" / "artifacts", ignore=shutil.ignore_patterns(".lock"))
    for paper in papers:
        print(f"[mutation_check] smoke reproduction of {paper} on the unmutated copy ...", flush=True)
        p = repro(tree, "reproduce", paper, "--profile", "smoke", "--runs-dir", str(base_runs), "--out",
                  str(base_runs / "reports"), timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"mutation_check: the unmutated smoke reproduction of {paper} failed:\n"
                             f"{p.stderr[-2000:]}")
        p = repro(tree, "gate", paper, "--profile", "smoke", "--runs-dir", str(base_runs), "--baselines",
                  str(baselines), "--update-baselines", "--allow-dirty", timeout=timeout)
        if p.returncode != 0:
            raise SystemExit(f"mutation_check: pinning {paper} failed:\n{p.stderr[-2000:]}")


def gate_cells(tree: Path, m: Mutation | None, paper: str, base_runs: Path, baselines: Path, scratch: Path,
               timeout: int) -> tuple[list[str], list[str]]:
    runs = scratch / f"runs-{m.key if m else 'control'}"
    shutil.rmtree(runs, ignore_errors=True)
    if m is None or m.reuse_artifacts:
        src = base_runs / "smoke" / "artifacts"
        if src.is_dir():
            shutil.copytree(src, runs / "smoke" / "artifacts", ignore=shutil.ignore_patterns(".lock"))
    p = repro(tree, "reproduce", paper, "--profile", "smoke", "--runs-dir", str(runs), "--out", str(runs / "reports"),
              timeout=timeout)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["?"])[-1]
        return [f"(smoke reproduction failed: {tail[:160]})"], []
    g = repro(tree, "gate", paper, "--profile", "smoke", "--runs-dir", str(runs), "--baselines", str(baselines),
              timeout=timeout)
    cells = [re.sub(r"^REGRESSION \S+ ", "", line).split(": baseline")[0].split(": held")[0]
             for line in g.stdout.splitlines() if line.startswith("REGRESSION ")]
    notes = [] if g.returncode in (0, 1) else [f"gate exit {g.returncode}: {g.stderr.strip()[-200:]}"]
    return cells, notes


def check_one(tree: Path, m: Mutation | None, args, base_runs: Path, baselines: Path, scratch: Path) -> Outcome:
    t0 = time.perf_counter()
    target = tree / m.file if m else None
    original = target.read_text() if target else None
    out = Outcome(m.key if m else "control", m.what if m else "no mutation (everything must pass)")
    try:
        if m:
            target.write_text(original.replace(m.old, m.new, 1))
        tests = m.tests if m else tuple(sorted({t for x in MUTATIONS for t in x.tests}))
        out.tests_failed, tail = run_tests(tree, tests, args.timeout)
        if not m and out.tests_failed:
            out.notes.append("control tests fail:\n" + tail)
        papers = [m.paper] if m and m.paper else ([] if m else sorted({x.paper for x in MUTATIONS if x.paper}))
        if not args.no_gate:
            for paper in papers:
                cells, notes = gate_cells(tree, m, paper, base_runs, baselines, scratch, args.timeout)
                out.gate_cells += cells
                out.notes += notes
    finally:
        if target:
            target.write_text(original)
    out.seconds = time.perf_counter() - t0
    return out


def table(outcomes: list[Outcome]) -> str:
    lines = ["| mutation | caught by tests | caught by gate cells | verdict |", "|---|---|---|---|"]
    for o in outcomes:
        tests = ", ".join(t.split("::")[-1] for t in o.tests_failed) or "—"
        cells = ", ".join(o.gate_cells) or "—"
        if o.key == "control":
            verdict = "ok (nothing fails)" if not o.caught else "CONTROL FAILS: fix before trusting the rows below"
        else:
            verdict = "caught" if o.caught else "NOT CAUGHT"
        lines.append(f"| {o.key}: {o.what} | {tests} | {cells} | {verdict} ({o.seconds:.0f}s) |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="mutation keys to run (default: all)")
    ap.add_argument("--models-from", default=None, help="a smoke runs dir whose trained models (artifacts) are "
                    "reused instead of training them again (default: train)")
    ap.add_argument("--no-gate", action="store_true", help="tests only")
    ap.add_argument("--no-control", action="store_true", help="skip the unmutated control row")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds per pytest / repro call")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.only is None or m.key in args.only]
    if args.only and len(chosen) != len(args.only):
        raise SystemExit(f"unknown mutation key(s); known: {', '.join(m.key for m in MUTATIONS)}")
    scratch = Path(tempfile.mkdtemp(prefix="mutation_check-"))
    scratch.chmod(0o755)  # the sandbox tests run a probe from the copy as an unprivileged user
    try:
        tree = copy_tree(scratch / "repo")
        check_patterns(tree, chosen)
        base_runs = scratch / "base-runs"
        baselines = scratch / "baselines"
        if not args.no_gate:
            papers = sorted({m.paper for m in chosen if m.paper})
            pin_baselines(tree, base_runs, baselines, papers, args.timeout,
                          Path(args.models_from) if args.models_from else None)
        outcomes = [] if args.no_control else [check_one(tree, None, args, base_runs, baselines, scratch)]
        for m in chosen:
            print(f"[mutation_check] {m.key} ...", flush=True)
            outcomes.append(check_one(tree, m, args, base_runs, baselines, scratch))
        print(table(outcomes))
        for o in outcomes:
            for n in o.notes:
                print(f"note {o.key}: {n}")
        return 0 if all(o.caught for o in outcomes if o.key != "control") else 1
    finally:
        if args.keep:
            print(f"[mutation_check] scratch kept at {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
