"""A one-line progress meter (examples/s and ETA) that works in logs as well as terminals."""
from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(self, label: str, total: int | None, done: int = 0, stream: TextIO = sys.stderr,
                 min_interval_s: float = 1.0):
        self.label, self.total, self.done = label, total, done
        self.start_done = done
        self.stream = stream
        self.t0 = time.perf_counter()
        self._last = 0.0
        self.min_interval_s = min_interval_s
        self._tty = getattr(stream, "isatty", lambda: False)()

    def rate(self) -> float:
        dt = time.perf_counter() - self.t0
        return (self.done - self.start_done) / dt if dt > 0 else 0.0

    def line(self) -> str:
        r = self.rate()
        if self.total:
            left = self.total - self.done
            eta = f"ETA {left / r:5.0f}s" if r > 0 else "ETA    ?"
            return f"[{self.label}] {self.done}/{self.total} ({100 * self.done / self.total:3.0f}%) {r:6.2f} ex/s {eta}"
        return f"[{self.label}] {self.done} {r:6.2f} ex/s"

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.perf_counter()
        if now - self._last >= self.min_interval_s or (self.total and self.done >= self.total):
            self._last = now
            end = "\r" if self._tty and self.total and self.done < self.total else "\n"
            self.stream.write(self.line() + end)
            self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
        self.stream.flush()
