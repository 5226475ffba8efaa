"""Pinned results come from committed code: the policy for writing committed reports and baselines.

Why: a committed report or baseline says "this commit produces these numbers". Written from a working
tree with uncommitted changes, it describes code nobody can check out, and the next gate compares against
a ghost. So writing into a git-tracked (not ignored) report or baseline path refuses on a dirty tree,
unless ``--allow-dirty``, in which case the report header and the baseline say so loudly. Scratch
folders outside the repository (or ignored by git, like smoke reports) are never refused.
"""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from suite.provenance import REPO_ROOT, git_state

DIRTY_WARNING = ("WARNING: built from a working tree with uncommitted changes (--allow-dirty); these numbers "
                 "cannot be traced to a commit")


class DirtyTree(ValueError):
    """Refused: a committed result would be written from uncommitted code."""


def is_committed_target(path: Path) -> bool:
    """True when ``path`` lies inside this repository and git does not ignore it (so it would be committed)."""
    try:
        rel = Path(path).resolve().relative_to(REPO_ROOT)
    except ValueError:
        return False
    # a file inside the path too, so that directory patterns (``reports/*/smoke/``) match folders not yet made
    for probe in (rel, rel / "report.md"):
        try:
            out = subprocess.run(["git", "check-ignore", "-q", str(probe)], cwd=REPO_ROOT, capture_output=True,
                                 timeout=10)
        except (OSError, subprocess.SubprocessError):
            return False
        if out.returncode != 1:  # 0 = ignored, 1 = not ignored, 128 = not a git repository
            return False
    return True


def tree_is_dirty() -> bool:
    return bool(git_state().get("dirty"))


def require_clean(path: Path, what: str, allow_dirty: bool) -> None:
    """Refuse to write ``what`` into a committed ``path`` from a dirty tree (unless ``allow_dirty``)."""
    if allow_dirty or not tree_is_dirty() or not is_committed_target(path):
        return
    raise DirtyTree(f"{path}: refusing to write {what} from a working tree with uncommitted changes (git status); "
                    f"commit first, or pass --allow-dirty to write it marked as built from uncommitted code")


def pin_meta(allow_dirty: bool) -> dict[str, Any]:
    """What a baseline records about the code it was pinned from."""
    g = git_state()
    meta: dict[str, Any] = {"git_commit": g.get("commit"), "git_dirty": bool(g.get("dirty"))}
    if g.get("dirty"):
        meta["warning"] = DIRTY_WARNING
        meta["allow_dirty"] = bool(allow_dirty)
    return meta
