"""Advisory locks that keep two processes from writing the same run, report or artifacts folder.

Why flock: the kernel drops the lock when its holder dies (even by SIGKILL), so a killed run never
leaves a stale lock behind, and a resumed run simply takes it again. The lock file also records who
holds it (pid, host, command, since), so a second writer fails at once with a message a person can
act on instead of interleaving records with the first.

Locks are re-entrant within one process (a ``repro reproduce`` holding the artifacts lock may run a
spec that takes its run folder's lock), because two ``flock`` calls on two open descriptions of the
same file would otherwise block each other inside one process.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

LOCK_NAME = ".lock"
"""Lock file name inside the guarded folder; deleters of a folder's contents must skip it."""

_HELD: dict[str, tuple[int, int]] = {}
"""Real path of a lock file -> (fd, depth) for the locks this process holds."""


class LockBusy(RuntimeError):
    """Another process holds the lock; the message names it."""


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    command: str
    since: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.since} ({self.command})"


def _me() -> Holder:
    return Holder(pid=os.getpid(), host=socket.gethostname(), command=" ".join(sys.argv)[:300],
                  since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def read_holder(lock_file: Path) -> Holder | None:
    """Who wrote the lock file last (the holder, while the lock is held); None if unreadable."""
    try:
        d = json.loads(Path(lock_file).read_text(encoding="utf-8"))
        return Holder(int(d["pid"]), str(d["host"]), str(d["command"]), str(d["since"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _busy_message(lock_file: Path, what: str) -> str:
    holder = None
    for _ in range(20):  # the holder writes its name right after taking the lock: give it a moment
        holder = read_holder(lock_file)
        if holder is not None:
            break
        time.sleep(0.01)
    who = holder.describe() if holder else "another process (it has not written its name yet)"
    return (f"{lock_file.parent}: {what} is being written by {who}; wait for it to finish or stop it "
            f"(the lock is released when that process exits)")


@contextmanager
def exclusive(folder: Path, what: str = "this folder") -> Iterator[Path]:
    """Hold ``<folder>/.lock`` for the duration of the block, or raise ``LockBusy`` naming the holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock_file = folder / LOCK_NAME
    key = os.path.realpath(lock_file)
    if key in _HELD:
        fd, depth = _HELD[key]
        _HELD[key] = (fd, depth + 1)
        try:
            yield lock_file
        finally:
            _release(key)
        return
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockBusy(_busy_message(lock_file, what)) from None
    _HELD[key] = (fd, 1)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(_me())) + "\n").encode(), 0)
        yield lock_file
    finally:
        _release(key)


def _release(key: str) -> None:
    fd, depth = _HELD[key]
    if depth > 1:
        _HELD[key] = (fd, depth - 1)
        return
    del _HELD[key]
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_lock_file(path: Path) -> bool:
    return Path(path).name == LOCK_NAME
