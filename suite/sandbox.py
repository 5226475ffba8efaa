"""Run untrusted (model-generated) Python in a separate, limited process.

Isolation here is a child interpreter in isolated mode, in an empty temporary
directory, with a scrubbed environment, CPU/memory/file-size/process limits and a
wall-clock timeout, and with the destructive parts of ``os``/``shutil``/
``subprocess`` disabled before the program runs. It is a guard against accidents,
not a security boundary against a determined adversary: run the paper profile in
a container if the models are untrusted.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_GUARD = r'''
import builtins, os, shutil, subprocess, sys
def _blocked(*a, **k):
    raise PermissionError("blocked inside the sandbox")
for _name in ("system", "kill", "killpg", "fork", "forkpty", "execv", "execve", "execvp", "spawnl", "spawnv",
              "popen", "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
              "chmod", "chown", "putenv", "setuid"):
    if hasattr(os, _name):
        setattr(os, _name, _blocked)
shutil.rmtree = shutil.move = shutil.chown = _blocked
subprocess.Popen = subprocess.run = subprocess.call = subprocess.check_output = _blocked
'''


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str
    """passed | failed | timeout."""
    detail: str = ""


def _limits(memory_bytes: int, cpu_s: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.setsid()


def run_python(program: str, *, timeout_s: float = 10.0, memory_bytes: int = 1 << 30) -> ExecResult:
    with tempfile.TemporaryDirectory(prefix="repro-sandbox-") as cwd:
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-c", _GUARD + "\n" + "exec(compile(sys.stdin.read(), 'program', 'exec'))"],
                input=program, cwd=cwd, capture_output=True, text=True, timeout=timeout_s,
                env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "HOME": cwd},
                preexec_fn=lambda: _limits(memory_bytes, int(timeout_s) + 1),
            )
        except subprocess.TimeoutExpired:
            return ExecResult(False, "timeout", f"exceeded {timeout_s}s")
    if proc.returncode == 0:
        return ExecResult(True, "passed")
    last = (proc.stderr.strip().splitlines() or ["exit code %d" % proc.returncode])[-1]
    return ExecResult(False, "failed", last[:300])
