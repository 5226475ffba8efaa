"""The contracts between task adapters, systems under test and the runner.

Tasks never import a reproduction and reproductions never import a task: both
speak only these types, so a third-party package can add either side.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, runtime_checkable


@dataclass(frozen=True)
class Example:
    """One evaluation item as the task adapter loaded it."""

    id: str
    """Stable identifier (e.g. ``HumanEval/0``); run records are keyed by it."""
    data: Mapping[str, Any]
    """Everything the adapter needs to build the request and score the output."""


@dataclass(frozen=True)
class GenerationRequest:
    """A text-generation request: what a language-model system receives."""

    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    """Strings that end the generation; the returned text excludes them."""


@dataclass
class Generation:
    """A system's answer plus the statistics it measured while producing it."""

    text: str
    stats: dict[str, float] = field(default_factory=dict)
    """e.g. prompt_tokens, generated_tokens, drafted, accepted, wall_s, ms_per_token."""


@dataclass
class RunContext:
    """What the runner hands a system when it builds it."""

    profile: str
    data_root: Path | None
    artifacts: Mapping[str, Path]
    """Model aliases (e.g. ``layerskip``) resolved to checkpoint directories by the paper's prepare step."""
    device: str = "cpu"
    seed: int = 0


@runtime_checkable
class System(Protocol):
    """A system under test. Built once per run with the spec's parameters."""

    def identity(self) -> Mapping[str, Any]:
        """Everything beyond the spec that changes outputs (e.g. checkpoint sha256)."""

    def generate(self, request: Any, example: Example) -> Generation:
        """Answer one request. ``example`` is given so oracle-style systems can cheat on purpose."""


class Task(Protocol):
    """A task adapter: official data format in, per-example scores out."""

    name: str
    main_metric: str

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        """Yield examples in the official order; the runner applies ``limit``."""

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        """Files read for this split, checksummed into the run's provenance."""

    def request(self, example: Example) -> Any:
        """Turn an example into what the system receives."""

    def score(self, example: Example, output: Generation) -> dict[str, float]:
        """Per-example metrics; aggregates are means over examples unless ``aggregate`` says otherwise."""
