"""Share a machine's cores among worker processes that run side by side and finish at different times.

Two trainers started together, one core each, leave a core idle once the faster one is done. A
:class:`CoreShare` is a folder of one marker file per live worker; each worker asks it now and then how
many threads it may use (the usable cores divided by the live workers), so the last one running gets the
whole machine. Markers hold their process id, so a worker that died without cleaning up stops counting.

The thread count changes only how fast a worker computes, never what: callers must not use it in results
(the LayerSkip trainer's GEMMs give bit-identical weights at 1 and 2 threads, pinned by a test).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers narrow), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    return True


@dataclass(frozen=True)
class CoreShare:
    folder: Path
    """Where the workers' marker files live (one folder per group of side-by-side workers)."""
    cores: int = 0
    """Cores to share; 0 = this machine's usable cores."""

    def live_workers(self) -> int:
        n = 0
        for marker in Path(self.folder).glob("*.worker"):
            try:
                pid = int(marker.read_text().strip() or 0)
            except (OSError, ValueError):
                continue  # being written or removed right now
            if pid > 0 and _alive(pid):
                n += 1
        return n

    def threads(self) -> int:
        """This worker's fair share of the cores now (at least 1)."""
        return max(1, (self.cores or usable_cores()) // max(1, self.live_workers()))

    @contextmanager
    def worker(self, name: str) -> Iterator["CoreShare"]:
        """Count this process as a live worker for the duration of the block."""
        folder = Path(self.folder)
        folder.mkdir(parents=True, exist_ok=True)
        marker = folder / f"{name}.worker"
        marker.write_text(str(os.getpid()))
        try:
            yield self
        finally:
            marker.unlink(missing_ok=True)
