"""Finding data files: the data root, checksums, and exact instructions when data is missing.

Data is never copied into the project. It is read from ``REPRO_DATA_DIR`` (or
``--data-root``); files with a public URL can be downloaded into the user's cache
with a checksum check; the rest fail with where to get them.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from suite.provenance import sha256_file


class DataMissing(FileNotFoundError):
    """A data file is absent; the message says where to get it."""


def data_root(explicit: str | os.PathLike | None = None) -> Path | None:
    value = explicit if explicit is not None else os.environ.get("REPRO_DATA_DIR")
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise DataMissing(f"REPRO_DATA_DIR={value}: not a directory")
    return root


def cache_dir() -> Path:
    base = os.environ.get("REPRO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "repro")
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass(frozen=True)
class DataFile:
    """One file a task reads, with where it lives under the data root and how to get it."""

    relpath: str
    """Path under the data root, e.g. ``humaneval/HumanEval.jsonl.gz``."""
    sha256: str | None = None
    url: str | None = None
    """Public URL to download from when the file is absent (checked against sha256)."""
    instructions: str = ""
    """What to tell a user when there is no URL (licence-gated data)."""

    def resolve(self, root: Path | None, *, download: bool = True) -> Path:
        candidates = []
        if root is not None:
            candidates.append(root / self.relpath)
        candidates.append(cache_dir() / "data" / self.relpath)
        for c in candidates:
            if c.is_file():
                return c
        if download and self.url and os.environ.get("REPRO_OFFLINE") != "1":
            return self._download(candidates[-1])
        where = f" under REPRO_DATA_DIR={root}" if root else " (REPRO_DATA_DIR is not set)"
        how = self.instructions or (f"download it from {self.url}" if self.url else "")
        raise DataMissing(f"missing data file {self.relpath}{where}; {how}".rstrip("; "))

    def _download(self, dest: Path) -> Path:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False) as tmp:
            try:
                with urllib.request.urlopen(self.url, timeout=60) as r:  # noqa: S310 (fixed https URL)
                    shutil.copyfileobj(r, tmp)
            except OSError as e:
                os.unlink(tmp.name)
                raise DataMissing(f"could not download {self.url} for {self.relpath}: {e}; "
                                  f"place the file at {dest} or set REPRO_DATA_DIR") from e
        got = sha256_file(Path(tmp.name))
        if self.sha256 and got != self.sha256:
            os.unlink(tmp.name)
            raise DataMissing(f"{self.url}: sha256 {got} does not match the expected {self.sha256}")
        os.replace(tmp.name, dest)
        return dest


def hf_cache_dirs(kind: str) -> list[Path]:
    """Local Hugging Face cache folders for ``kind`` = "hub" or "datasets", most specific first.

    Everything here reads these folders offline; nothing downloads from the hub at run time.
    """
    specific = {"hub": "HF_HUB_CACHE", "datasets": "HF_DATASETS_CACHE"}[kind]
    out = []
    if os.environ.get(specific):
        out.append(Path(os.environ[specific]))
    if os.environ.get("HF_HOME"):
        out.append(Path(os.environ["HF_HOME"]) / kind)
    out.append(Path.home() / ".cache" / "huggingface" / kind)
    return out
