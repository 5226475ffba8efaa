"""sha256 of files, cached by (real path, size, mtime_ns) across processes.

Why: checking data files against their official checksums, and recognising that a finished run's
checkpoint has not changed, must cost a ``stat`` call, not a read of 13 GB of weights. The cache is a
small JSON file in the user's cache folder; a file whose size or mtime changed is hashed again, and
losing the cache (or a concurrent writer's update) only costs a re-hash.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from suite.provenance import sha256_file

CACHE_NAME = "sha256-cache.json"
_MEMO: dict[str, tuple[int, int, str]] = {}


def _cache_file() -> Path:
    from suite.data import cache_dir

    return cache_dir() / CACHE_NAME


def _load() -> dict[str, list]:
    try:
        d = json.loads(_cache_file().read_text(encoding="utf-8"))
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _store(path: str, entry: tuple[int, int, str]) -> None:
    cache = _load()
    cache[path] = list(entry)
    target = _cache_file()
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(cache, sort_keys=True), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:  # a read-only cache folder only costs speed
        tmp.unlink(missing_ok=True)


def sha256_cached(path: Path) -> str:
    """The file's sha256; re-read only when its size or modification time changed."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (st.st_size, st.st_mtime_ns)
    hit = _MEMO.get(real)
    if hit and hit[:2] == key:
        return hit[2]
    stored = _load().get(real)
    if isinstance(stored, list) and len(stored) == 3 and tuple(stored[:2]) == key:
        _MEMO[real] = (key[0], key[1], str(stored[2]))
        return str(stored[2])
    digest = sha256_file(Path(real))
    entry = (key[0], key[1], digest)
    _MEMO[real] = entry
    _store(real, entry)
    return digest


def verify(path: Path, expected: str, what: str) -> Path:
    """``path`` if its sha256 is the official one, else a one-line error naming the file and both digests."""
    got = sha256_cached(path)
    if got != expected:
        raise ValueError(f"{path}: sha256 {got} differs from the official {what} file's {expected}; "
                         f"re-download it (a modified or truncated copy gives numbers that are not comparable)")
    return Path(path)
