"""Name -> implementation registries for tasks, systems and papers.

Built-ins register exactly as a third-party package does: through Python entry points
(groups ``repro.tasks``, ``repro.systems``, ``repro.papers``) declared in pyproject.toml,
read lazily as ``"module:attr"`` strings and imported only when used, so nothing is
registered as a side effect of importing something else. A name registered twice is an
error, and an unknown name fails with the close matches.
"""
from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Any, Callable


class RegistryError(LookupError):
    pass


class Registry:
    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._targets: dict[str, str | Callable[..., Any]] = {}
        self._sources: dict[str, str] = {}
        self._entry_points_loaded = False

    def register(self, name: str, target: str | Callable[..., Any], source: str = "runtime") -> None:
        self._load_entry_points()
        self._add(name, target, source)

    def _add(self, name: str, target: str | Callable[..., Any], source: str) -> None:
        if name in self._targets:
            raise RegistryError(
                f"{self.kind} {name!r} is registered twice ({self._sources[name]} and {source}); rename one"
            )
        self._targets[name] = target
        self._sources[name] = source

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        seen: set[tuple[str, str, str]] = set()
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            dist_name = dist.name if dist else "?"
            if (dist_name, ep.name, ep.value) in seen:
                continue  # the same distribution found twice on sys.path (e.g. an editable install)
            seen.add((dist_name, ep.name, ep.value))
            self._add(ep.name, ep.value, f"entry point of {dist_name}")

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._targets)

    def get(self, name: str) -> Any:
        self._load_entry_points()
        if not self._targets:
            raise RegistryError(f"no {self.kind}s are registered (entry point group {self.group!r} is empty): "
                                f"install the suite first, e.g. `pip install -e .`")
        if name not in self._targets:
            close = difflib.get_close_matches(name, list(self._targets), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} (known: {', '.join(sorted(self._targets))})")
        target = self._targets[name]
        if isinstance(target, str):
            module_name, _, attr = target.partition(":")
            obj: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                obj = getattr(obj, part)
            return obj
        return target


TASKS = Registry("task", "repro.tasks")
SYSTEMS = Registry("system", "repro.systems")
PAPERS = Registry("paper", "repro.papers")

PROFILES = ("smoke", "mini", "paper")
PROFILE_DTYPE = {"mini": "float32"}
"""Precision a profile uses unless ``--dtype``/``$REPRO_DTYPE`` says otherwise (else ``auto``). The mini baselines
are pinned in fp32 so that they hold on every CPU, with or without native bf16; smoke follows the hardware (CI runs
on one kind of machine) and the paper profile uses bf16 on GPUs, as the papers did."""
