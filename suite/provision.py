"""Make a data root hold what a paper needs: status of each data set, fetching, and ``ensure_data``.

``ensure_data`` is what ``repro reproduce`` calls before any training starts: it fetches whatever the
paper needs at the profile and is missing, or (offline) stops with one message that lists everything
missing and exactly where to put it. Licence-gated data is never fetched; its absence is reported with
how to obtain it, and the tables that need it say "not run".
"""
from __future__ import annotations

import importlib
import json
import sys
import time
from dataclasses import dataclass
from hashlib import sha256 as _sha256
from pathlib import Path, PurePosixPath
from typing import Callable, Sequence

from suite import data as _data
from suite import fetch
from suite.data import DataMissing, hf_cache_dirs
from suite.data_manifest import Dataset, Source, needed
from suite.provenance import sha256_file
from suite.records import write_json_atomic

Log = Callable[[str], None]
FETCH_LOG_DIR = ".repro-fetched"
"""Under the data root: one JSON per fetched data set (URLs, sha256 of what arrived, when)."""


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class DataStatus:
    dataset: Dataset
    state: str
    """present | bundled | missing | partial | corrupt"""
    where: str
    missing: tuple[str, ...] = ()
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("present", "bundled")


# -- status -------------------------------------------------------------------------------------------------------

def _present(path: Path, rel: str) -> bool:
    if rel.endswith("/"):
        return path.is_dir() and any(path.iterdir())
    return path.is_file()


def _json_sha(path: Path) -> str:
    obj = json.loads(path.read_text(encoding="utf-8"))
    return _sha256(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()).hexdigest()


def _wrong_checksum(ds: Dataset, root: Path, rel: str) -> bool:
    want = ds.files.get(rel)
    path = root / rel
    if want:
        return sha256_file(path) != want
    src = next((s for s in ds.sources if s.dest == rel and s.json_sha256), None)
    return src is not None and _json_sha(path) != src.json_sha256


def _bundled(ds: Dataset) -> Path | None:
    if not ds.bundled_by:
        return None
    from importlib import resources

    rel = next(iter(ds.files))
    try:
        p = resources.files(ds.bundled_by) / "data" / PurePosixPath(rel).name
    except ModuleNotFoundError:
        return None
    return Path(str(p)) if p.is_file() else None


def _hf_model_cached(repo: str) -> bool:
    for hub in hf_cache_dirs("hub"):
        snaps = hub / ("models--" + repo.replace("/", "--")) / "snapshots"
        if snaps.is_dir() and any((s / "config.json").is_file() for s in snaps.iterdir()):
            return True
    return False


def _substitute(ds: Dataset, root: Path) -> DataStatus | None:
    """A user file (``ds.env``) or a vendored alternative under the root that serves instead of the data set."""
    import os

    if ds.env and os.environ.get(ds.env):
        path = Path(os.environ[ds.env]).expanduser()
        state = "present" if path.is_file() else "missing"
        return DataStatus(ds, state, str(path), () if path.is_file() else (str(path),), detail=f"from {ds.env}")
    for rel in ds.alternatives:
        if (root / rel).is_file():
            return DataStatus(ds, "present", str(root / rel), detail="alternative file")
    return None


def status(ds: Dataset, root: Path, *, verify: bool = False) -> DataStatus:
    """Is the data set there? ``verify`` also checks every pinned sha256 (slower: reads every file)."""
    sub = _substitute(ds, root)
    if sub is not None:
        return sub
    if ds.hf is not None:
        from suite.hf_data import cached_split_files, datasets_cache

        missing = tuple(s for s in ds.hf.splits if not cached_split_files(ds.hf.repo, ds.hf.config, s))
        state = "present" if not missing else ("partial" if len(missing) < len(ds.hf.splits) else "missing")
        return DataStatus(ds, state, f"HF datasets cache {datasets_cache()}", tuple(f"split {s}" for s in missing))
    if ds.hf_models:
        missing = tuple(r for r in ds.hf_models if not _hf_model_cached(r))
        state = "present" if not missing else ("partial" if len(missing) < len(ds.hf_models) else "missing")
        return DataStatus(ds, state, f"HF hub cache {hf_cache_dirs('hub')[0]}", missing)
    missing = tuple(rel for rel in ds.files if not _present(root / rel, rel))
    where = _where(ds, root)
    if missing:
        bundled = _bundled(ds)
        if bundled is not None:
            return DataStatus(ds, "bundled", str(bundled), detail=f"installed with the {ds.bundled_by} package")
        state = "partial" if len(missing) < len(ds.files) else "missing"
        return DataStatus(ds, state, where, missing)
    if verify:
        bad = tuple(rel for rel in ds.files if not rel.endswith("/") and _wrong_checksum(ds, root, rel))
        if bad:
            return DataStatus(ds, "corrupt", where, bad, detail=f"{len(bad)} file(s) with a wrong sha256")
    return DataStatus(ds, "present", where)


def _where(ds: Dataset, root: Path) -> str:
    """The common folder of the data set's files under the root (what a user would look at)."""
    tops = sorted({PurePosixPath(rel).parts[0] for rel in ds.files})
    return ", ".join(str(root / t) for t in tops) if tops else str(root)


# -- fetching -----------------------------------------------------------------------------------------------------

def fetch_dataset(ds: Dataset, root: Path, *, log: Log = _stderr) -> DataStatus:
    """Download what is missing of one data set (resumable) and return its status afterwards."""
    if ds.gated:
        raise DataMissing(f"{ds.name}: {ds.gated}")
    if fetch.offline():
        raise DataMissing(missing_message([status(ds, root)], root, why=_offline_reason()))
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    arrived: list[dict] = []
    if ds.hf is not None:
        from suite.hf_data import load_split

        for split in ds.hf.splits:
            log(f"data: {ds.name}: loading {ds.hf.repo} split {split} into the HF datasets cache")
            load_split(ds.hf.repo, ds.hf.config, split, download=True)
            arrived.append({"hf": ds.hf.repo, "config": ds.hf.config, "split": split})
    elif ds.builder:
        module, _, func = ds.builder.partition(":")
        getattr(importlib.import_module(module), func)(ds, root, log=log)
        arrived.append({"builder": ds.builder})
    else:
        for src in ds.sources:
            arrived.append(_fetch_source(ds, src, root, log))
    after = status(ds, root, verify=True)
    if not after.ok:
        raise fetch.FetchError(f"{ds.name}: still {after.state} after fetching ({', '.join(after.missing[:3])})")
    write_json_atomic(root / FETCH_LOG_DIR / f"{ds.name}.json",
                      {"dataset": ds.name, "fetched_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
                       "mirror": fetch.mirror_base(), "sources": arrived})
    log(f"data: {ds.name}: ready under {after.where} ({time.time() - started:.0f}s)")
    return after


def _fetch_source(ds: Dataset, src: Source, root: Path, log: Log) -> dict:
    url = fetch.source_url(src.url, src.mirror_path)
    expected = {rel[len(src.dest) + 1:]: sha for rel, sha in ds.files.items()
                if rel.startswith(src.dest + "/") and not rel.endswith("/")}
    log(f"data: {ds.name}: downloading {url}")
    if not src.is_archive:
        got = fetch.download(url, root / src.dest, sha256=src.sha256 or ds.files.get(src.dest),
                             label=PurePosixPath(src.mirror_path).name)
        if src.json_sha256 and _json_sha(got.path) != src.json_sha256:
            got.path.unlink()
            raise fetch.FetchError(f"{url}: the JSON content differs from the expected one (canonical sha256 "
                                   f"{src.json_sha256}); the download was deleted")
        return {"url": url, "sha256": got.sha256, "bytes": got.bytes}
    archive = root / ".downloads" / src.mirror_path
    got = fetch.download(url, archive, sha256=src.sha256, label=archive.name)
    try:
        fetch.unpack_verified(archive, root / src.dest, strip=src.strip, expected=expected)
    except fetch.FetchError:
        archive.unlink(missing_ok=True)  # a wrong archive must not be reused by the next attempt
        raise
    archive.unlink()
    return {"url": url, "sha256": got.sha256, "bytes": got.bytes}


# -- what a paper needs -------------------------------------------------------------------------------------------

def _offline_reason() -> str:
    import os

    on = [v for v in ("REPRO_OFFLINE", "HF_HUB_OFFLINE") if os.environ.get(v, "").strip().lower() in fetch.TRUE]
    return f"offline ({', '.join(v + '=' + os.environ[v] for v in on)})"


def how_to_place(s: DataStatus, root: Path) -> str:
    """Exactly where the missing pieces of one data set go, and where they come from."""
    ds = s.dataset
    if ds.gated:
        text = ds.gated.replace("<data root>", str(root))
        return f"{ds.name}: {text}" + (f" (missing: {', '.join(s.missing)})" if s.missing else "")
    if ds.hf is not None:
        cfg = f" --config {ds.hf.config}" if ds.hf.config else ""
        return (f"{ds.name}: {', '.join(s.missing)} of {ds.hf.repo}{cfg} missing from the {s.where}; run "
                f"`repro data fetch {ds.name}` on a machine with internet (or HF_ENDPOINT=<hub mirror>) and copy "
                f"that cache here")
    parts = []
    for src in ds.sources:
        if ds.builder:
            what = f"run `repro data fetch {ds.name}` where {src.url} and the images' coco_url are reachable"
        elif src.is_archive:
            inner = f" (its folder {src.strip}/)" if src.strip else ""
            what = f"unpack {src.url}{inner} into {root / src.dest}/"
        else:
            what = f"download {src.url} to {root / src.dest}"
        parts.append(f"{what} [mirror path: {src.mirror_path}]")
    example = s.missing[0] if s.missing else ""
    return (f"{ds.name}: {len(s.missing)} of {len(ds.files)} file(s) missing, e.g. {root / example}; "
            + "; ".join(parts))


def missing_message(statuses: Sequence[DataStatus], root: Path, *, why: str = "", what: str = "") -> str:
    lines = [f"{why + ': ' if why else ''}{len(statuses)} data set(s){' needed by ' + what if what else ''} "
             f"missing under the data root {root}:"]
    lines += [f"  - {how_to_place(s, root)}" for s in statuses]
    lines.append("  Unset REPRO_OFFLINE / HF_HUB_OFFLINE to download them, set REPRO_DATA_MIRROR to a mirror with the "
                 "mirror paths above, or put the files in place by hand.")
    return "\n".join(lines)


def ensure_data(paper_name: str, profile: str, data_root: str | Path | None = None, *, log: Log = _stderr) -> None:
    """Fetch what ``paper_name`` (or "all") needs at ``profile`` and is missing; offline, fail listing it all."""
    root = _data.data_root(data_root)
    report = [status(ds, root) for ds in needed(paper_name, profile)]
    missing = [s for s in report if not s.ok]
    gated = [s for s in missing if s.dataset.gated]
    public = [s for s in missing if not s.dataset.gated]
    if public and fetch.offline():
        raise DataMissing(missing_message(missing, root, why=_offline_reason(), what=f"{paper_name}/{profile}"))
    for s in public:
        fetch_dataset(s.dataset, root, log=log)
    for s in gated:
        log(f"data: not fetched, {how_to_place(s, root)}")
