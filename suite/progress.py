"""Progress with rate and ETA, readable in a terminal and in a CI log alike.

In a terminal this is a plain tqdm bar. When the stream is not a terminal (CI logs, ``| tee``), a bar
redrawn with carriage returns turns into one unreadable line, so instead a complete line (tqdm's own
rate/ETA formatting) is written every ``REPRO_PROGRESS_INTERVAL`` seconds (default 10) and once at the end.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from tqdm import tqdm

LINE_FORMAT = "{desc}: {n_fmt}%s/{total_fmt}%s ({percentage:3.0f}%%) {rate_fmt} elapsed {elapsed}, ETA {remaining}"
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt}%s {rate_fmt} elapsed {elapsed}"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("REPRO_PROGRESS_INTERVAL", "10")))
    except ValueError:
        return 10.0


class Progress:
    """Counts finished units (examples, bytes); ``done`` is what a resumed job had already finished."""

    def __init__(self, desc: str, total: int | None, done: int = 0, stream: TextIO | None = None,
                 min_interval_s: float | None = None, unit: str = "ex"):
        self.desc, self.total, self.done, self.unit = desc, total, done, unit
        self.start_done = done
        self.stream = stream if stream is not None else sys.stderr
        self.min_interval_s = _interval() if min_interval_s is None else min_interval_s
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._t0 = time.perf_counter()
        self._last_line = self._t0
        self._closed = False
        self._written = done
        self._bar = None
        if self._tty:
            self._bar = tqdm(total=total, initial=done, desc=desc, unit=unit, file=self.stream, leave=True,
                             unit_scale=unit == "B", unit_divisor=1024 if unit == "B" else 1000, dynamic_ncols=True)

    @property
    def label(self) -> str:  # the name this class used before it was built on tqdm
        return self.desc

    def rate(self) -> float:
        dt = time.perf_counter() - self._t0
        return (self.done - self.start_done) / dt if dt > 0 else 0.0

    def line(self) -> str:
        """The current state as one line (tqdm's formatting; the rate counts only this session's work)."""
        rate = self.rate() or None
        suffix = "B" if self.unit == "B" else ""
        fmt = LINE_FORMAT % (suffix, suffix) if self.total else LINE_FORMAT_NO_TOTAL % suffix
        return tqdm.format_meter(self.done, self.total, time.perf_counter() - self._t0, prefix=self.desc,
                                 unit=self.unit, unit_scale=self.unit == "B",
                                 unit_divisor=1024 if self.unit == "B" else 1000, rate=rate, bar_format=fmt,
                                 initial=self.start_done)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        finished = bool(self.total) and self.done >= self.total
        if finished or now - self._last_line >= self.min_interval_s:
            self._last_line = now
            self._write()
            if finished:
                self._closed = True

    def _write(self) -> None:
        self._written = self.done
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif not self._closed and self.done > self._written:
            self._write()
        self._closed = True
        self.stream.flush()
