"""Fault injection for the suite's own robustness tests: kill a job with SIGKILL at random moments.

Why a helper: "resumes correctly after a kill" is only believable if the kill lands at many different
points (mid-example, mid-write, mid-checkpoint), not at one hand-picked place; the kill tests of the
runner and of both trainers share this loop.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence


@dataclass
class KillReport:
    kills: int
    """Attempts killed while still running."""
    finished_early: bool
    """An attempt finished before its kill (the job was shorter than the kills asked for)."""
    delays_s: list[float]
    returncode: int | None = None
    """Exit status of the attempt that finished by itself (None when every attempt was killed)."""


def kill_repeatedly(cmd: Sequence[str], *, progress: Callable[[], int], kills: int, max_delay_s: float,
                    seed: int = 0, cwd: Path | None = None, env: Mapping[str, str] | None = None,
                    start_timeout_s: float = 120.0, log: Path | None = None, min_progress: int = 1) -> KillReport:
    """Run ``cmd`` up to ``kills`` times; each time wait until ``progress()`` grew by ``min_progress`` (the job
    is doing work, not importing, and got past a checkpoint when progress counts steps), then SIGKILL it after a
    random delay in [0, max_delay_s]."""
    rng = random.Random(seed)
    delays: list[float] = []
    done = 0
    for _ in range(kills):
        before = progress()
        out = open(log, "ab") if log else subprocess.DEVNULL
        try:
            proc = subprocess.Popen(list(cmd), cwd=cwd, env=None if env is None else dict(env), stdout=out,
                                    stderr=subprocess.STDOUT if log else subprocess.DEVNULL)
            deadline = time.time() + start_timeout_s
            while progress() < before + min_progress and proc.poll() is None and time.time() < deadline:
                time.sleep(0.01)
            delay = rng.uniform(0.0, max_delay_s)
            time.sleep(delay)
            if proc.poll() is not None:
                return KillReport(done, True, delays, proc.returncode)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            if log:
                out.close()
        delays.append(delay)
        done += 1
    return KillReport(done, False, delays)
