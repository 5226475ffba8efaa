"""The one place figures are written: headless backend, atomic file, figure closed (a report draws many)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend: reports are drawn on machines without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, out: Path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``out`` through a temporary file, so a killed report never leaves half a PNG."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    fig.tight_layout()
    fig.savefig(tmp, dpi=dpi, format=out.suffix.lstrip(".") or "png")
    os.replace(tmp, out)
    pyplot().close(fig)
    return out
