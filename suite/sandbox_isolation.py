"""How a sandboxed program is started: the bubblewrap command line, or (opted in) a bare process.

bubblewrap (``bwrap``) gives the program new PID, network, IPC and UTS namespaces
(no network, no view of other processes, everything killed with the namespace's
first process), and a file system made of read-only binds of what the
interpreter needs (``/usr``, the Python prefix, the loader cache) plus a private,
size-capped tmpfs at ``/tmp``; nothing else of the host (no home, no project, no
host ``/tmp``) exists inside.

Two ways to run it, both probed before use:

* as root, bwrap runs privileged with every capability dropped except setuid/setgid,
  which the supervisor uses at once to become a throwaway uid: RLIMIT_NPROC is not
  enforced for root, and a fresh uid per run keeps parallel runs from sharing it;
* as any other user, bwrap creates a user namespace (no capabilities, nested user
  namespaces disabled where bwrap supports it), and the process limit counts only
  that namespace's processes.
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0",
       "PYTHONDONTWRITEBYTECODE": "1", "PYTHONSAFEPATH": "1"}
"""The whole environment of a sandboxed program: nothing of the evaluator's (no tokens, no keys) leaks in."""

_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_ETC = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
_UIDS = (1_000_000_000, 2_000_000_000)
"""Throwaway uids for privileged mode: far above any real account, one drawn per run."""


def python_executable() -> str:
    """The base interpreter (not a venv's): the sandbox runs the standard library only."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


@lru_cache(maxsize=None)
def bwrap_features(bwrap: str) -> frozenset[str]:
    """Options this bwrap build knows (``--size`` and ``--disable-userns`` are recent)."""
    try:
        text = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return frozenset()
    return frozenset(word for word in text.split() if word.startswith("--"))


@dataclass(frozen=True)
class Isolation:
    """One way of starting the sandbox supervisor; ``kind`` is ``bwrap`` or ``none`` (opted in, unisolated)."""

    kind: str
    python: str = field(default_factory=python_executable)
    bwrap: str | None = None
    privileged: bool = False

    def sandbox_uid(self) -> int | None:
        """The uid the supervisor switches to (privileged bwrap only), fresh for every run."""
        if self.kind == "bwrap" and self.privileged:
            return _UIDS[0] + secrets.randbelow(_UIDS[1] - _UIDS[0])
        return None

    def command(self, harness: str, tmp_bytes: int, info_fd: int | None) -> list[str]:
        interpreter = [self.python, "-S", "-s", "-c", harness]
        if self.kind != "bwrap":
            return interpreter
        assert self.bwrap is not None
        features = bwrap_features(self.bwrap)
        argv = [self.bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
        if self.privileged:
            argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            argv += ["--unshare-user"] + (["--disable-userns"] if "--disable-userns" in features else [])
        argv += _filesystem(self.python, tmp_bytes if "--size" in features else None)
        if info_fd is not None:
            argv += ["--info-fd", str(info_fd)]
        return argv + ["--"] + interpreter


def _filesystem(python: str, tmp_bytes: int | None) -> list[str]:
    argv = ["--ro-bind", "/usr", "/usr"]
    for path in _TOP_LEVEL:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for path in _ETC:
        argv += ["--ro-bind-try", path, path]
    made: set[str] = set()
    for root in _python_roots(python):
        for parent in reversed(Path(root).parents):
            if str(parent) != "/" and str(parent) not in made:
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--ro-bind", root, root]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += (["--size", str(tmp_bytes)] if tmp_bytes else []) + ["--perms", "1777", "--tmpfs", "/tmp"]
    # bwrap's root and /dev are tmpfs (memory) that a user-namespace sandbox owns: make them read-only too
    return argv + ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", "/tmp"]


def _python_roots(python: str) -> list[str]:
    """Host directories the interpreter needs beyond /usr: its prefix (stdlib, libpython) and its own folder."""
    candidates = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix), os.path.dirname(python)}
    roots: list[str] = []
    for path in sorted(candidates):
        if path == "/usr" or path.startswith("/usr/") or any(path.startswith(r + "/") for r in roots):
            continue
        roots.append(path)
    return roots


def bwrap_candidate(bwrap: str | None) -> Isolation | None:
    """The bwrap set-up this process would use, before probing whether the kernel allows it."""
    if not bwrap or not os.access(bwrap, os.X_OK):
        return None
    return Isolation(kind="bwrap", bwrap=bwrap, privileged=os.geteuid() == 0)
