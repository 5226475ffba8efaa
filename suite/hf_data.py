"""Hugging Face ``datasets`` as the reader of hub data sets: downloaded once, then read offline.

Runs never download: they load with the library's offline mode forced on, which makes ``datasets``
use its local cache (the latest prepared copy). Only ``repro data fetch`` loads online. ``datasets``
reads ``HF_HUB_OFFLINE`` once, at import time, so the mode is switched on its config for the duration
of a call instead of through the environment.
"""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

from suite.data import DataMissing, hf_cache_dirs


def datasets_cache() -> Path:
    """The HF datasets cache in effect now (``HF_DATASETS_CACHE``, ``HF_HOME/datasets`` or the default)."""
    return hf_cache_dirs("datasets")[0]


def _cache_name(repo: str) -> str:
    from datasets.naming import camelcase_to_snakecase

    parts = repo.split("/")
    parts[-1] = camelcase_to_snakecase(parts[-1])
    return "___".join(parts)


def cached_split_files(repo: str, config: str | None, split: str, cache: Path | None = None) -> list[Path]:
    """Arrow files of a prepared split in the local cache; [] when it was never fetched."""
    base = (cache or datasets_cache()) / _cache_name(repo) / (config or "default")
    if not base.is_dir():
        return []
    files = [p for p in base.glob("*/*/*.arrow")
             if p.name.rsplit(".", 1)[0].endswith(f"-{split}") or f"-{split}-" in p.name]
    if not files:
        return []
    newest = max({p.parent for p in files}, key=lambda d: d.stat().st_mtime)
    return sorted(p for p in files if p.parent == newest)


@contextlib.contextmanager
def _offline(on: bool) -> Iterator[None]:
    import datasets.config as dc

    before = dc.HF_HUB_OFFLINE
    dc.HF_HUB_OFFLINE = on or before
    try:
        yield
    finally:
        dc.HF_HUB_OFFLINE = before


def load_split(repo: str, config: str | None, split: str, *, download: bool = False) -> Any:
    """A ``datasets.Dataset``; offline unless ``download`` (then it is fetched into the cache first)."""
    import datasets

    cache = datasets_cache()
    if not download and not cached_split_files(repo, config, split, cache):
        raise DataMissing(f"{repo}{'/' + config if config else ''} split {split!r} is not in the HF datasets cache "
                          f"{cache}")
    try:
        with _offline(not download):
            return datasets.load_dataset(repo, config, split=split, cache_dir=str(cache))
    except (ConnectionError, FileNotFoundError, ValueError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataMissing(f"{repo} split {split!r}: {first}") from e
