"""Name -> implementation registries for tasks, systems and papers.

Built-ins are an explicit table of ``"module:attr"`` strings imported lazily, so
nothing is registered as a side effect of importing something else. Third-party
packages add entries through Python entry points (groups ``repro.tasks``,
``repro.systems``, ``repro.papers``). A name registered twice is an error, and an
unknown name fails with the close matches.
"""
from __future__ import annotations

import difflib
import importlib
from importlib import metadata
from typing import Any, Callable


class RegistryError(LookupError):
    pass


class Registry:
    def __init__(self, kind: str, group: str, builtins: dict[str, str]):
        self.kind = kind
        self.group = group
        self._targets: dict[str, str | Callable[..., Any]] = dict(builtins)
        self._sources: dict[str, str] = {name: "built-in" for name in builtins}
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
        for ep in metadata.entry_points(group=self.group):
            dist = getattr(ep, "dist", None)
            source = f"entry point of {dist.name if dist else '?'}"
            if self._sources.get(ep.name) == "built-in" and ep.value == self._targets.get(ep.name):
                continue  # our own package's entry points mirror the built-in table
            self._add(ep.name, ep.value, source)

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._targets)

    def get(self, name: str) -> Any:
        self._load_entry_points()
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


TASKS = Registry(
    "task",
    "repro.tasks",
    {
        "humaneval": "suite.tasks.humaneval:HumanEvalTask",
        "topv2": "suite.tasks.topv2:TopV2Task",
        "cnn_dm": "suite.tasks.summarization:CnnDmTask",
        "xsum": "suite.tasks.summarization:XsumTask",
    },
)

SYSTEMS = Registry(
    "system",
    "repro.systems",
    {
        "oracle": "suite.systems.reference:OracleSystem",
        "wrong": "suite.systems.reference:WrongSystem",
        "layerskip-ar": "reproductions.layerskip.systems:LayerSkipAR",
        "layerskip-early-exit": "reproductions.layerskip.systems:LayerSkipEarlyExit",
        "layerskip-self-spec": "reproductions.layerskip.systems:LayerSkipSelfSpec",
    },
)

PAPERS = Registry(
    "paper",
    "repro.papers",
    {
        "sanity": "reproductions.sanity.paper:PAPER",
        "layerskip": "reproductions.layerskip.paper:PAPER",
        "catlip": "reproductions.catlip.paper:PAPER",
    },
)

PROFILES = ("smoke", "mini", "paper")
