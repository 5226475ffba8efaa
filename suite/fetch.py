"""Download and unpack public data: resumable, checksummed, and never half-installed.

Why each piece is here:

* Data sets are large and links drop, so a download goes to ``<dest>.part`` and a retry (in the same
  call, or a later ``repro data fetch``) continues with an HTTP ``Range`` request instead of starting over.
* A file is only renamed into place after its sha256 matched, so a reader never sees a wrong or
  truncated file. Where the archive's own sha256 cannot be known in advance (the TOPv2 zip, served
  behind a redirect), the files inside it are checked instead, before anything is moved into place.
* Archives are unpacked into a staging folder next to the destination and moved in with ``os.replace``:
  a failed or interrupted unpack leaves the old state, not a mix.
* ``REPRO_DATA_MIRROR`` sends every download to a mirror with the same relative layout (air-gapped
  clusters); ``REPRO_OFFLINE=1`` / ``HF_HUB_OFFLINE=1`` forbid downloading altogether.

This module knows no data set; ``suite.data_manifest`` says what to fetch and ``suite.provision``
puts the two together.
"""
from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Mapping, TextIO

from suite.data import DataMissing
from suite.progress import Progress
from suite.provenance import sha256_file

CHUNK = 1 << 20
TRUE = ("1", "true", "yes", "on")
USER_AGENT = "repro-suite-fetch/1"


class FetchError(DataMissing):
    """A download or unpack failed; the message is one line that says what to do next."""


def offline() -> bool:
    """True when the user asked for no network at all (the suite's switch or the Hugging Face one)."""
    return any(os.environ.get(v, "").strip().lower() in TRUE for v in ("REPRO_OFFLINE", "HF_HUB_OFFLINE"))


def mirror_base() -> str | None:
    value = os.environ.get("REPRO_DATA_MIRROR", "").strip()
    return value.rstrip("/") if value else None


def source_url(url: str, mirror_path: str) -> str:
    """Where a file is actually read from: the mirror (same relative layout) when one is set."""
    base = mirror_base()
    if not base:
        return url
    if "://" not in base:  # a plain folder is a mirror too (file:// URL)
        return Path(base).expanduser().resolve().joinpath(mirror_path).as_uri()
    return f"{base}/{mirror_path}"


@dataclass(frozen=True)
class Downloaded:
    path: Path
    sha256: str
    bytes: int
    resumed_from: int
    """Bytes that were already on disk from an interrupted attempt (0 = fresh download)."""


class _Interrupted(Exception):
    """The connection ended before the announced length; the ``.part`` file is kept for resuming."""


def _retryable(e: BaseException) -> bool:
    """Worth another attempt (a dropped or refused connection, a 5xx); a 404 or a missing mirror file is not."""
    if isinstance(e, urllib.error.HTTPError):
        return e.code in (408, 429) or e.code >= 500
    if isinstance(e, urllib.error.URLError):
        return not isinstance(e.reason, (FileNotFoundError, PermissionError, IsADirectoryError))
    return isinstance(e, (_Interrupted, http.client.HTTPException, ConnectionError, TimeoutError))


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)  # noqa: S310


def _attempt(url: str, part: Path, label: str, timeout: float, stream: TextIO | None) -> int:
    """One HTTP request appended to ``part``; returns the bytes already there before it."""
    offset = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, offset, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:  # nothing left to send: the part is complete (the checksum decides)
            return offset
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if offset and not (status == 206 and resp.headers.get("Content-Range", "").startswith(f"bytes {offset}-")):
            offset = 0  # the server ignored the Range header: start again from byte 0
        length = resp.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        bar = Progress(label, total, done=offset, unit="B", **({"stream": stream} if stream else {}))
        try:
            with open(part, "ab" if offset else "wb") as f:
                while True:
                    try:
                        chunk = resp.read(CHUNK)
                    except http.client.IncompleteRead as e:
                        f.write(e.partial)
                        raise _Interrupted(f"connection closed after {f.tell()} bytes") from e
                    if not chunk:
                        break
                    f.write(chunk)
                    bar.update(len(chunk))
                size = f.tell()
        finally:
            bar.close()
        if total is not None and size < total:
            raise _Interrupted(f"connection closed after {size} of {total} bytes")
    return offset


def download(url: str, dest: Path, *, sha256: str | None = None, label: str | None = None, retries: int = 3,
             timeout: float = 60.0, backoff_s: float = 1.0, stream: TextIO | None = None) -> Downloaded:
    """Fetch ``url`` to ``dest`` (resuming ``dest.part``); the file appears only once its checksum matched."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    label = label or dest.name
    resumed_from = part.stat().st_size if part.exists() else 0
    for attempt in range(retries + 1):
        try:
            _attempt(url, part, label, timeout, stream)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError, _Interrupted) as e:
            have = part.stat().st_size if part.exists() else 0
            if not _retryable(e) or attempt == retries:
                kept = f"; {have} bytes kept in {part.name}, rerun the same command to resume" if have else ""
                raise FetchError(f"could not download {url}: {_reason(e)}{kept}") from e
            time.sleep(backoff_s * (2 ** attempt))
    got = sha256_file(part)
    if sha256 and got != sha256:
        part.unlink()
        raise FetchError(f"{url}: sha256 {got} does not match the expected {sha256}; the download was deleted "
                         f"(if REPRO_DATA_MIRROR is set, check the mirror's copy)")
    size = part.stat().st_size
    os.replace(part, dest)
    return Downloaded(dest, got, size, resumed_from)


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code} {e.reason}"
    if isinstance(e, urllib.error.URLError):
        return str(e.reason)
    return str(e) or type(e).__name__


# -- unpacking ---------------------------------------------------------------------------------------------------

def _safe_member(name: str, archive: Path) -> PurePosixPath:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise FetchError(f"{archive.name}: refusing to unpack the unsafe member path {name!r}")
    return p


def extract(archive: Path, into: Path) -> None:
    """Unpack a .zip or .tar(.gz) into ``into``, refusing paths that would land outside it."""
    name = archive.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _safe_member(info.filename, archive)
            zf.extractall(into)
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as tf:
            tf.extractall(into, filter="data")
    else:
        raise FetchError(f"{archive.name}: unknown archive type (expected .zip, .tar.gz, .tgz or .tar)")


def verify_files(base: Path, expected: Mapping[str, str | None], what: str) -> None:
    """Every expected file exists under ``base`` with its sha256 (None = only existence is checked)."""
    for rel, want in sorted(expected.items()):
        path = base / rel
        if not path.is_file():
            raise FetchError(f"{what}: {rel} is missing")
        if want:
            got = sha256_file(path)
            if got != want:
                raise FetchError(f"{what}: {rel} has sha256 {got}, expected {want}; nothing was installed")


def replace_dir(src: Path, dest: Path) -> None:
    """Move a finished folder into place; whatever was at ``dest`` is removed only after the move."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dest.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
        os.replace(dest, old / dest.name)
    os.replace(src, dest)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def unpack_verified(archive: Path, dest: Path, *, strip: str = "", expected: Mapping[str, str | None] = (),
                    check: Callable[[Path], None] | None = None) -> Path:
    """Unpack ``archive`` (its folder ``strip``) to ``dest`` atomically, after checking ``expected`` files.

    ``expected`` maps paths relative to ``dest`` to sha256 sums; on any mismatch nothing is moved
    into place and the staging folder is deleted.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        try:
            extract(archive, staging)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError) as e:
            raise FetchError(f"{archive.name}: not a valid archive ({e}); delete it and fetch again") from e
        src = staging / strip if strip else staging
        if not src.is_dir() and expected and all((staging / rel).is_file() for rel in expected):
            src = staging  # the same files without the enclosing folder (a re-packed copy, e.g. on a mirror)
        if not src.is_dir():
            raise FetchError(f"{archive.name}: has no folder {strip!r}; is this the right archive?")
        verify_files(src, dict(expected), archive.name)
        if check is not None:
            check(src)
        replace_dir(src, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return dest


def write_verified(dest: Path, data: bytes, sha256: str | None, what: str) -> None:
    """Write derived bytes (a filtered annotation file) only if they are exactly the expected ones."""
    from hashlib import sha256 as _sha

    got = _sha(data).hexdigest()
    if sha256 and got != sha256:
        raise FetchError(f"{what}: derived {dest.name} has sha256 {got}, expected {sha256}; the source differs "
                         f"from the official release")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, dest)
