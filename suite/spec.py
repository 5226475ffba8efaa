"""Run specs: the frozen identity of one evaluation run.

The spec's hash names the run folder, so anything that changes an output must be
in it (decoding settings, limit, seed, task options). What the spec cannot know,
such as the checksum of the checkpoint an alias resolves to, is the system's
``identity()``; it is stored in the run and a mismatch invalidates the run.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

SPEC_VERSION = 1
"""Bump when the meaning of a field changes, so old runs are never mixed with new ones."""


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple) and all(isinstance(i, tuple) and len(i) == 2 and isinstance(i[0], str) for i in value) and value:
        return {k: _thaw(v) for k, v in value}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class RunSpec:
    task: str
    """Registered task adapter name."""
    system: str
    """Registered system-under-test name."""
    profile: str
    """smoke | mini | paper."""
    split: str = "test"
    """Dataset split the task reads."""
    limit: int | None = None
    """First N examples in the official order; None = all."""
    seed: int = 0
    """Seed for the system (sampling) and the bootstrap."""
    task_args: tuple = field(default=())
    """Frozen task constructor options (e.g. TOPv2 domains)."""
    params: tuple = field(default=())
    """Frozen system parameters (model alias, exit_layer, num_speculations, ...)."""

    @classmethod
    def make(cls, task: str, system: str, profile: str, *, split: str = "test", limit: int | None = None,
             seed: int = 0, task_args: Mapping[str, Any] | None = None,
             params: Mapping[str, Any] | None = None) -> "RunSpec":
        return cls(task=task, system=system, profile=profile, split=split, limit=limit, seed=seed,
                   task_args=_freeze(task_args or {}), params=_freeze(params or {}))

    @property
    def params_dict(self) -> dict[str, Any]:
        return _thaw(self.params) or {}

    @property
    def task_args_dict(self) -> dict[str, Any]:
        return _thaw(self.task_args) or {}

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["task_args"] = self.task_args_dict
        d["params"] = self.params_dict
        d["spec_version"] = SPEC_VERSION
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> "RunSpec":
        return cls.make(d["task"], d["system"], d["profile"], split=d.get("split", "test"), limit=d.get("limit"),
                        seed=d.get("seed", 0), task_args=d.get("task_args"), params=d.get("params"))

    @property
    def hash(self) -> str:
        blob = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def dirname(self) -> str:
        return f"{self.task}__{self.system}__{self.hash}"

    def label(self) -> str:
        p = ",".join(f"{k}={v}" for k, v in sorted(self.params_dict.items()))
        return f"{self.task}/{self.split}[:{self.limit}] {self.system}({p})"
