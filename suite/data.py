"""Finding data files: the data root, checksums, and exact instructions when data is missing.

Data is never copied into the project. It is read from the data root: ``--data-root``, else
``REPRO_DATA_DIR``, else the user cache (``$XDG_CACHE_HOME/repro-suite/data``, ``~/.cache/...`` by default),
which is where ``repro data fetch`` puts what it downloads. A missing file fails with where it was
looked for and how to get it (``repro data fetch NAME`` for public data).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from suite.provenance import sha256_file


class DataMissing(FileNotFoundError):
    """A data file is absent; the message says where to get it."""


def cache_dir() -> Path:
    """The suite's per-user cache folder (``REPRO_CACHE_DIR``, else ``$XDG_CACHE_HOME/repro-suite``)."""
    base = os.environ.get("REPRO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "repro-suite")
    path = Path(base).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only home only costs the caches that live here
        pass
    return path


def default_data_root() -> Path:
    return cache_dir() / "data"


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: ``explicit`` (``--data-root``), else ``REPRO_DATA_DIR``, else the user cache.

    A root the user named must exist (a typo should not silently mean "no data"); the default one is
    created by the first ``repro data fetch``.
    """
    value = explicit if explicit is not None else os.environ.get("REPRO_DATA_DIR")
    if not value:
        return default_data_root().resolve()
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        source = "--data-root" if explicit is not None else "REPRO_DATA_DIR"
        raise DataMissing(f"{source}={value}: not a directory")
    return root


def _fetch_hint(relpath: str) -> str:
    """``repro data fetch NAME`` when a public data set of the manifest provides this file."""
    from suite.data_manifest import DATASETS  # the manifest imports the task modules, which import this one

    for ds in DATASETS:
        if not ds.gated and (ds.sources or ds.hf) and any(
                relpath == f or (f.endswith("/") and relpath.startswith(f)) for f in ds.files):
            return f"run `repro data fetch {ds.name}`"
    return ""


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
        root = Path(root) if root is not None else data_root()
        path = root / self.relpath
        if path.is_file():
            return path
        from suite import fetch

        if download and self.url and not fetch.offline():
            try:
                fetch.download(fetch.source_url(self.url, self.relpath), path, sha256=self.sha256,
                               label=self.relpath)
            except fetch.FetchError as e:
                raise DataMissing(f"{e}; or place the file at {path}") from e
            return path
        hints = [h for h in (_fetch_hint(self.relpath), self.instructions,
                             f"download it from {self.url}" if self.url and not self.instructions else "") if h]
        msg = f"missing data file {self.relpath} under the data root {root} (REPRO_DATA_DIR or --data-root)"
        raise DataMissing(msg + ("; " + "; or ".join(hints) if hints else ""))

    def verify(self, path: Path) -> Path:
        """The file itself, or a one-line error when its sha256 is not the pinned one."""
        if self.sha256:
            got = sha256_file(path)
            if got != self.sha256:
                raise DataMissing(f"{path}: sha256 {got} does not match the expected {self.sha256}; delete it "
                                  f"and fetch it again")
        return path


def hf_cache_dirs(kind: str) -> list[Path]:
    """Local Hugging Face cache folders for ``kind`` = "hub" or "datasets", most specific first.

    Runs read these folders offline; downloads into them happen only in ``repro data fetch``.
    """
    specific = {"hub": "HF_HUB_CACHE", "datasets": "HF_DATASETS_CACHE"}[kind]
    out = []
    if os.environ.get(specific):
        out.append(Path(os.environ[specific]))
    if os.environ.get("HF_HOME"):
        out.append(Path(os.environ["HF_HOME"]) / kind)
    out.append(Path.home() / ".cache" / "huggingface" / kind)
    return out
