"""Resolving the paths vision tasks take as arguments: absolute, or relative to a folder or the data root."""
from __future__ import annotations

from pathlib import Path

from suite.data import DataMissing


def under_data_root(data_root: Path | None, value: str | Path, what: str) -> Path:
    """``value`` if absolute, else ``data_root/value``; a relative path without a data root is an error."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    if data_root is None:
        raise DataMissing(f"{what}={value} is relative to the data root, but REPRO_DATA_DIR is not set "
                          f"(set it or pass --data-root)")
    return Path(data_root) / p


def first_existing(candidates: list[Path]) -> Path | None:
    return next((c for c in candidates if c.exists()), None)


def relative_to_either(value: str | Path, folder: Path, data_root: Path | None) -> Path:
    """An argument naming a file next to the data (``labels=val.txt``): absolute, else under ``folder``,
    else under the data root."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    candidates = [folder / p] + ([Path(data_root) / p] if data_root is not None else [])
    return first_existing(candidates) or candidates[0]
