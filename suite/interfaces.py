"""The contracts between task adapters, systems under test and the runner.

Tasks never import a reproduction and reproductions never import a task: both
speak only these types, so a third-party package can add either side.

The runner groups examples into batches and hands a system a list of requests; the
system returns one structured output per request (text, class scores, multi-label
scores, detections, a segmentation map). The runner still appends one record per
example, holding ``task.evidence(example, output)``: what the task's scorer needs to
recompute any dataset-level metric (COCO AP, mIoU, mAP) from records alone, so resume,
report and gate never rerun a model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence, runtime_checkable


@dataclass(frozen=True)
class Example:
    """One evaluation item as the task adapter loaded it."""

    id: str
    """Stable identifier (e.g. ``HumanEval/0``, a COCO image id); run records are keyed by it."""
    data: Mapping[str, Any]
    """Everything the adapter needs to build the request and score the output."""


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class GenerationRequest:
    """A text-generation request: what a language-model system receives."""

    prompt: str
    max_new_tokens: int
    stop: tuple[str, ...] = ()
    """Strings that end the generation; the returned text excludes them."""


@dataclass(frozen=True)
class ImageRequest:
    """An image to classify, detect in or segment: the file, plus the task's stated evaluation protocol.

    The system decodes the file itself (it knows its own input resolution and normalisation);
    ``resize``/``crop`` are the task's protocol (e.g. ImageNet: shorter side 256, center crop 224),
    which a classifier should follow unless its own identity says otherwise.
    """

    path: Path
    width: int | None = None
    height: int | None = None
    resize: int | None = None
    """Shorter side to resize to before cropping (classification protocol); None = the system's own."""
    crop: int | None = None
    """Center-crop size; None = no crop."""
    num_classes: int | None = None
    """Size of the task's label space (1000 for ImageNet-1k, 80 for COCO, 150 for ADE20k)."""


# ----------------------------------------------------------------------------- outputs


@dataclass
class Generation:
    """Generated text plus the statistics measured while producing it."""

    text: str
    stats: dict[str, float] = field(default_factory=dict)
    """e.g. prompt_tokens, generated_tokens, drafted, accepted, wall_s, ms_per_token."""

    def to_record(self) -> Any:
        return self.text


@dataclass
class ClassScores:
    """Single-label classification: the top-k class indices (best first) and their scores."""

    topk: list[int]
    scores: list[float]
    stats: dict[str, float] = field(default_factory=dict)

    def to_record(self) -> Any:
        return {"topk": [int(i) for i in self.topk], "scores": [round(float(s), 6) for s in self.scores]}


@dataclass
class MultiLabelScores:
    """Multi-label classification: one score per class of the task's label space, in its order."""

    scores: list[float]
    stats: dict[str, float] = field(default_factory=dict)

    def to_record(self) -> Any:
        return {"scores": [round(float(s), 6) for s in self.scores]}


@dataclass
class Detections:
    """Instances in one image, in the image's original pixel coordinates.

    ``boxes`` are COCO ``[x, y, width, height]``; ``labels`` are the task's category ids (COCO ids for
    COCO); ``masks`` are COCO RLEs (``{"size": [h, w], "counts": str}``) or None for box-only systems.
    """

    boxes: list[list[float]]
    scores: list[float]
    labels: list[int]
    masks: list[dict[str, Any]] | None = None
    stats: dict[str, float] = field(default_factory=dict)

    def to_record(self) -> Any:
        rec: dict[str, Any] = {"boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
                               "scores": [round(float(s), 6) for s in self.scores],
                               "labels": [int(c) for c in self.labels]}
        if self.masks is not None:
            rec["masks"] = [{"size": list(m["size"]), "counts": m["counts"].decode() if isinstance(
                m["counts"], bytes) else m["counts"]} for m in self.masks]
        return rec


@dataclass
class SegmentationMap:
    """Semantic segmentation: an HxW array of class indices at the annotation's resolution.

    Never stored whole: the task's ``evidence`` reduces it to what mIoU needs (confusion counts).
    """

    labels: Any
    """numpy int array, shape (H, W), values in the task's label space."""
    stats: dict[str, float] = field(default_factory=dict)

    def to_record(self) -> Any:
        raise TypeError("a SegmentationMap is reduced by the task's evidence(), never stored whole")


Output = Any
"""Generation | ClassScores | MultiLabelScores | Detections | SegmentationMap (or a task's own type)."""


# ----------------------------------------------------------------------------- runner <-> system


@dataclass
class RunContext:
    """What the runner hands a system when it builds it."""

    profile: str
    data_root: Path | None
    artifacts: Mapping[str, Path]
    """Model aliases (e.g. ``layerskip``) resolved to checkpoint directories by the paper's prepare step."""
    device: str = "cpu"
    """Resolved torch device (``cpu``, ``cuda:0``); ``auto`` has already been decided by the runner."""
    dtype: str = "float32"
    """Resolved compute dtype name (``float32``, ``bfloat16``, ``float16``), chosen by capability unless forced."""
    seed: int = 0


@runtime_checkable
class System(Protocol):
    """A system under test. Built once per run with the spec's parameters: ``cls(params, ctx)``."""

    def identity(self) -> Mapping[str, Any]:
        """Everything beyond the spec that changes outputs (e.g. checkpoint sha256)."""

    def predict(self, requests: Sequence[Any], examples: Sequence[Example]) -> list[Output]:
        """One output per request, in order. ``examples`` are given so oracle-style systems can cheat on purpose."""


class OneAtATime:
    """Mixin for systems that answer one request at a time: ``predict`` loops over ``generate``."""

    def generate(self, request: Any, example: Example) -> Output:  # pragma: no cover - overridden
        raise NotImplementedError

    def predict(self, requests: Sequence[Any], examples: Sequence[Example]) -> list[Output]:
        return [self.generate(r, e) for r, e in zip(requests, examples)]


class Task(Protocol):
    """A task adapter: official data format in, per-example scores and evidence out.

    Optional members the runner uses when present:

    * ``samples_per_example`` (int) and ``score_samples(example, outputs)``: several samples per example (pass@k);
    * ``evidence(example, output) -> JSON``: what to store per output (default ``output.to_record()``);
    * ``aggregate(records) -> {metric: float}``: dataset-level metrics recomputed from stored records
      (COCOeval AP, mIoU, mAP); per-example ``scores`` are still averaged with a bootstrap CI;
    * ``bootstrap_resamples`` (int): resamples of examples for a CI on ``aggregate`` metrics (0 = not computed,
      which the report states).
    """

    name: str
    main_metric: str

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        """Yield examples in the official order; the runner applies ``limit``."""

    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        """Files read for this split, checksummed into the run's provenance."""

    def request(self, example: Example) -> Any:
        """Turn an example into what the system receives."""

    def score(self, example: Example, output: Output) -> dict[str, float]:
        """Per-example metrics (may be empty for purely dataset-level tasks)."""
