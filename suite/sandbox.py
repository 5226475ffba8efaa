"""Run untrusted (model-generated) Python in an OS sandbox and say whether it finished, and if not, why.

A program passes only when the sandbox's supervisor reports, on a pipe of its own
and with a per-run nonce, that the program ran to its end (and, for a test, that
``check(candidate)`` returned); the exit status alone never passes anything, so
``os._exit(0)``, ``sys.exit(0)`` or an ``atexit`` hook before the test fail with
their reason. See ``sandbox_harness`` for the supervisor and ``sandbox_isolation``
for the namespaces and file system.

Limits (``Limits``) are set with setrlimit in the child before any untrusted code
runs: address space, CPU seconds, processes, file size, open files; ``/tmp`` is a
size-capped tmpfs; stderr is read in bounded chunks and only its first
``output_bytes`` are kept (stdout is discarded), so a program that prints forever
costs the evaluator nothing. Programs run in parallel with ``run_many``.

Where no isolation works (no bubblewrap, namespaces forbidden), running model
code is refused with ``SandboxUnavailable`` unless ``REPRO_ALLOW_UNSANDBOXED=1``
is set, in which case programs run as bare processes (same verdict rules and
rlimits except the process count, no namespaces) and every result says
``isolation="none"``.
"""
from __future__ import annotations

import marshal
import math
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from suite.sandbox_isolation import ENV, Isolation, bwrap_candidate

HARNESS = (Path(__file__).with_name("sandbox_harness.py")).read_text(encoding="utf-8")
ALLOW_UNSANDBOXED = "REPRO_ALLOW_UNSANDBOXED"
_CHUNK = 1 << 16
_REPORT_CAP = 1 << 14


class SandboxUnavailable(RuntimeError):
    """No isolation works on this machine and the user did not opt in to running code without it."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    """Wall clock, from start to the supervisor's report."""
    memory_bytes: int = 512 << 20
    """RLIMIT_AS of the program (and of each process it forks)."""
    processes: int = 8
    """RLIMIT_NPROC: processes and threads of the sandbox's uid, supervisor included."""
    file_bytes: int = 1 << 20
    open_files: int = 64
    tmp_bytes: int = 16 << 20
    """Size of the private /tmp (a tmpfs, i.e. memory)."""
    output_bytes: int = 16 << 10
    """How much of stderr is kept; the rest is read and dropped."""
    cpu_s: int | None = None
    """RLIMIT_CPU; default: the timeout rounded up, plus one second."""

    def for_harness(self, count_processes: bool) -> dict[str, int | None]:
        return {"memory_bytes": self.memory_bytes, "file_bytes": self.file_bytes, "open_files": self.open_files,
                "cpu_s": self.cpu_s or math.ceil(self.timeout_s) + 1,
                "processes": self.processes if count_processes else None}


@dataclass(frozen=True)
class Program:
    """Untrusted ``source``, and optionally the trusted test that judges it.

    Without ``test`` the program runs as ``__main__`` and passes when it runs to its end. With
    ``test``, ``source`` runs first (as ``__candidate__``, so its ``if __name__ == "__main__"``
    block stays off, as in the official HumanEval harness); then ``context`` (trusted, e.g.
    HumanEval's prompt with its helpers) and ``test`` run in a namespace of their own, and
    ``check(candidate)`` is called with the program's ``entry_point``: the program's globals
    can shadow nothing the test uses, and the candidate must return built-in values.
    """

    source: str
    test: str | None = None
    context: str = ""
    entry_point: str = ""
    check: str = "check"
    preload: tuple[str, ...] = ()
    """Standard modules imported before the program (cheaper than importing them twice)."""


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    reason: str
    """``passed``, ``timeout after 3s``, ``signal SIGSEGV``, ``exit 0 without a pass report``,
    ``exit 1: AssertionError (<test> line 4)``, ``no report from the sandbox supervisor (...)``."""
    stderr: str = ""
    """The first ``Limits.output_bytes`` of the program's stderr."""
    wall_s: float = 0.0
    isolation: str = "bwrap"

    @property
    def status(self) -> str:
        """``passed`` | ``timeout`` | ``failed``."""
        if self.passed:
            return "passed"
        return "timeout" if self.reason.startswith("timeout") else "failed"


# ----------------------------------------------------------------------------- choosing the isolation

_lock = threading.Lock()
_found: dict[str | None, tuple[Isolation | None, str]] = {}


def find_isolation(bwrap: str | None = None) -> tuple[Isolation | None, str]:
    """The isolation that works here (probed once per process and bwrap path), or None and why not."""
    path = bwrap if bwrap is not None else shutil.which("bwrap")
    with _lock:
        if path not in _found:
            _found[path] = _probe(path)
        return _found[path]


def _probe(path: str | None) -> tuple[Isolation | None, str]:
    candidate = bwrap_candidate(path)
    if candidate is None:
        return None, "bubblewrap (bwrap) is not installed" if not path else f"{path} is not executable"
    result = _execute(Program("pass"), Limits(timeout_s=20), candidate)
    if result.passed:
        return candidate, ""
    first = (result.stderr.strip().splitlines() or [result.reason])[0]
    return None, f"{path} cannot create the sandbox here ({first[:200]})"


def require_isolation(bwrap: str | None = None) -> Isolation:
    """The isolation to run model code with; SandboxUnavailable unless it works or the user opted out of it."""
    found, why = find_isolation(bwrap)
    if found is not None:
        return found
    if os.environ.get(ALLOW_UNSANDBOXED) == "1":
        warnings.warn(f"running model-generated code WITHOUT isolation ({why}; {ALLOW_UNSANDBOXED}=1)", stacklevel=2)
        return Isolation(kind="none")
    raise SandboxUnavailable(
        f"refusing to run model-generated code without isolation: {why}. Install bubblewrap "
        f"(apt-get install bubblewrap) and allow namespaces, or set {ALLOW_UNSANDBOXED}=1 to run it unsandboxed "
        "at your own risk")


# ----------------------------------------------------------------------------- running


def run_python(program: str | Program, *, limits: Limits | None = None, timeout_s: float | None = None,
               isolation: Isolation | None = None) -> ExecResult:
    """Run one program in the sandbox (``timeout_s`` overrides ``limits.timeout_s``)."""
    limits = limits or Limits()
    if timeout_s is not None:
        limits = replace(limits, timeout_s=timeout_s)
    prog = program if isinstance(program, Program) else Program(program)
    return _execute(prog, limits, isolation or require_isolation())


def default_workers() -> int:
    """Parallel sandboxes: ``REPRO_SANDBOX_WORKERS``, or one per CPU plus one to cover start-up waits."""
    return max(1, int(os.environ.get("REPRO_SANDBOX_WORKERS", 0)) or (os.cpu_count() or 1) + 1)


def run_many(programs: Sequence[Program], *, limits: Limits | None = None, workers: int | None = None,
             isolation: Isolation | None = None) -> list[ExecResult]:
    """Run programs in parallel sandboxes; results in the order given."""
    limits = limits or Limits()
    iso = isolation or require_isolation()
    n = min(workers or default_workers(), len(programs))
    if n <= 1:
        return [_execute(p, limits, iso) for p in programs]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda p: _execute(p, limits, iso), programs))


def _job(program: Program, limits: Limits, iso: Isolation, report_fd: int) -> bytes:
    job = {"source": program.source, "test": program.test, "context": program.context,
           "entry_point": program.entry_point, "check": program.check, "preload": tuple(program.preload),
           "limits": limits.for_harness(count_processes=iso.kind == "bwrap"), "report_fd": report_fd,
           "uid": iso.sandbox_uid()}
    payload = marshal.dumps(job)
    return b"%016x" % len(payload) + payload


def _execute(program: Program, limits: Limits, iso: Isolation) -> ExecResult:
    start = time.monotonic()
    nonce = secrets.token_hex(16)
    bare = iso.kind != "bwrap"
    with (tempfile.TemporaryDirectory(prefix="repro-sandbox-") if bare else nullcontext()) as workdir:
        proc, collected = _start(program, limits, iso, nonce, workdir)
        try:
            collected.run(start + limits.timeout_s)
        finally:  # also on Ctrl-C: a sandbox never outlives the evaluator's interest in it
            _reap(proc, collected, bare)
    wall = time.monotonic() - start
    stderr = collected.stderr.decode("utf-8", "replace")
    if collected.timed_out:
        return ExecResult(False, f"timeout after {limits.timeout_s:g}s", stderr, wall, iso.kind)
    passed, reason = _verdict(collected.report, nonce, proc.returncode, stderr)
    return ExecResult(passed, reason, stderr, wall, iso.kind)


def _start(program: Program, limits: Limits, iso: Isolation, nonce: str,
           workdir: str | None) -> tuple[subprocess.Popen, "_Collector"]:
    """Start the supervisor with the report pipe (and bwrap's info pipe) inherited; the job goes on stdin."""
    report_r, report_w = os.pipe()
    info_r, info_w = os.pipe() if iso.kind == "bwrap" else (None, None)
    env = {**ENV, "HOME": workdir, "TMPDIR": workdir} if workdir else dict(ENV)
    try:
        proc = subprocess.Popen(iso.command(HARNESS, limits.tmp_bytes, info_w), stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=workdir or "/",
                                pass_fds=[fd for fd in (report_w, info_w) if fd is not None], start_new_session=True)
    except BaseException:
        for fd in (report_r, info_r):
            if fd is not None:
                os.close(fd)
        raise
    finally:
        for fd in (report_w, info_w):
            if fd is not None:
                os.close(fd)
    stdin = _job(program, limits, iso, report_w) + nonce.encode()
    return proc, _Collector(proc, report_r, info_r, stdin, limits.output_bytes)


def _reap(proc: subprocess.Popen, collected: "_Collector", bare: bool) -> None:
    """Kill what is left: the namespace's first process (which takes every other with it), or the process group."""
    if not collected.finished:
        target = collected.child_pid()
        try:
            if bare or target is None:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(target, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if bare:  # no PID namespace: whatever the program left in its session goes now
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _verdict(report: bytes, nonce: str, returncode: int | None, stderr: str) -> tuple[bool, str]:
    parts = report.decode("utf-8", "replace").split("\n", 3)
    if len(parts) != 4 or not secrets.compare_digest(parts[0], nonce):
        first = (stderr.strip().splitlines() or [""])[0][:200]
        return False, f"no report from the sandbox supervisor (exit {returncode})" + (f": {first}" if first else "")
    _, how, verdict, detail = parts
    if how == "exit 0" and verdict == "ok":
        return True, "passed"
    if how.startswith("signal "):
        number = int(how.split()[1])
        try:
            return False, f"signal {signal.Signals(number).name}"
        except ValueError:
            return False, how
    return False, f"{how}: {detail}" if detail else f"{how} without a pass report"


class _Collector:
    """Feeds the job to the supervisor and drains its pipes in bounded chunks until its report is complete."""

    def __init__(self, proc: subprocess.Popen, report_fd: int, info_fd: int | None, stdin: bytes, keep: int):
        self.proc, self.report_fd, self.info_fd = proc, report_fd, info_fd
        self.pending, self.keep = stdin, keep
        self.stderr, self.report, self.info = b"", b"", b""
        self.timed_out = False
        self.finished = False
        """True once the supervisor's report pipe closed: the sandbox ended by itself."""

    def child_pid(self) -> int | None:
        """The host pid of the namespace's first process, as bwrap's --info-fd announced it."""
        text = self.info.decode("utf-8", "replace")
        key = '"child-pid":'
        if key not in text:
            return None
        digits = text.split(key, 1)[1].strip().split(",")[0].split("}")[0].strip()
        return int(digits) if digits.isdigit() else None

    def run(self, deadline: float) -> "_Collector":
        sel = selectors.DefaultSelector()
        stdin_fd, stderr_fd = self.proc.stdin.fileno(), self.proc.stderr.fileno()
        for fd in (stdin_fd, stderr_fd, self.report_fd, self.info_fd):
            if fd is not None:
                os.set_blocking(fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
        for fd in (stderr_fd, self.report_fd, self.info_fd):
            if fd is not None:
                sel.register(fd, selectors.EVENT_READ)
        try:
            self._loop(sel, deadline, stdin_fd, stderr_fd)
            self._drain(stderr_fd)
        finally:
            sel.close()
            self.proc.stdin.close()
            self.proc.stderr.close()
            os.close(self.report_fd)
            if self.info_fd is not None:
                os.close(self.info_fd)
        return self

    def _loop(self, sel: selectors.BaseSelector, deadline: float, stdin_fd: int, stderr_fd: int) -> None:
        while not self.finished:
            left = deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                return
            for key, _ in sel.select(left):
                self._handle(sel, key.fd, stdin_fd, stderr_fd)

    def _handle(self, sel: selectors.BaseSelector, fd: int, stdin_fd: int, stderr_fd: int) -> None:
        if fd == stdin_fd:
            self._feed(sel, fd)
            return
        chunk = self._read(fd)
        if chunk is None:
            return
        if not chunk:
            sel.unregister(fd)
            self.finished = self.finished or fd == self.report_fd
        elif fd == stderr_fd:
            self.stderr = _bounded(self.stderr, chunk, self.keep)
        elif fd == self.report_fd:
            self.report = _bounded(self.report, chunk, _REPORT_CAP)
        else:
            self.info = _bounded(self.info, chunk, _REPORT_CAP)

    def _feed(self, sel: selectors.BaseSelector, fd: int) -> None:
        try:
            written = os.write(fd, self.pending[:_CHUNK])
        except BlockingIOError:
            return
        except (BrokenPipeError, OSError):
            written = len(self.pending)
        self.pending = self.pending[written:]
        if not self.pending:
            sel.unregister(fd)

    @staticmethod
    def _read(fd: int) -> bytes | None:
        try:
            return os.read(fd, _CHUNK)
        except BlockingIOError:
            return None

    def _drain(self, fd: int) -> None:
        """What stderr still holds once the report is in (bounded: at most a pipe's worth)."""
        for _ in range(16):
            chunk = self._read(fd)
            if not chunk:
                return
            self.stderr = _bounded(self.stderr, chunk, self.keep)


def _bounded(kept: bytes, chunk: bytes, cap: int) -> bytes:
    """Keep the first ``cap`` bytes of a stream; the rest was read (so the writer never blocks) and is dropped."""
    return kept + chunk[:max(0, cap - len(kept))] if len(kept) < cap else kept
