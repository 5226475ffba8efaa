"""Progress: whole lines with rate and ETA in logs, a tqdm bar in a terminal, same interface for both."""
from __future__ import annotations

import io

from suite.progress import Progress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_mode_writes_whole_lines_with_rate_and_eta():
    out = io.StringIO()
    bar = Progress("topv2|oracle", 10, done=4, stream=out, min_interval_s=0)
    for _ in range(6):
        bar.update()
    bar.close()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and len(lines) == 6  # one per update at interval 0, none repeated by close
    assert lines[0].startswith("topv2|oracle: 5/10 ( 50%)") and "ex/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("topv2|oracle: 10/10 (100%)")


def test_log_mode_respects_the_interval_and_closes_with_the_final_count():
    out = io.StringIO()
    bar = Progress("download", None, stream=out, min_interval_s=3600, unit="B")
    for _ in range(5):
        bar.update(1024)
    assert out.getvalue() == ""  # nothing before the interval has passed
    bar.close()
    assert out.getvalue().startswith("download: 5.00kB") and out.getvalue().count("\n") == 1


def test_rate_counts_only_this_sessions_work():
    bar = Progress("x", 100, done=90, stream=io.StringIO(), min_interval_s=3600)
    assert bar.rate() == 0.0
    bar.update(2)
    assert bar.done == 92 and bar.start_done == 90 and bar.rate() > 0


def test_terminal_mode_is_a_tqdm_bar():
    out = Tty()
    bar = Progress("train", 3, stream=out)
    bar.update(3)
    bar.close()
    text = out.getvalue()
    assert "\r" in text and "train" in text and "3/3" in text
