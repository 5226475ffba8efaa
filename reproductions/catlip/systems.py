"""CatLIP systems under test: transfer models evaluated through the suite's task adapters.

Every system takes ``model`` (an artifact alias made by the CatLIP prepare step, e.g. ``catlip-lp-catlip``,
or a local checkpoint folder), builds on ``ctx.device``, answers batched ``predict`` calls and reports its
``identity()`` as the sha256 of the weight files, so a retrained checkpoint behind the same alias
invalidates old run records. Shared helpers come first; each task family's system follows.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from suite.interfaces import ClassScores, Example, ImageRequest, RunContext

# ----------------------------------------------------------------------------- shared helpers


def resolve_checkpoint(params: Mapping[str, Any], ctx: RunContext, system: str) -> Path:
    """``model`` param -> folder: an alias from the prepare step, else an existing local path."""
    name = params.get("model")
    if not name:
        raise ValueError(f"{system}: the system parameter 'model' (artifact alias or checkpoint folder) is required")
    if name in ctx.artifacts:
        return Path(ctx.artifacts[name])
    path = Path(str(name)).expanduser()
    if path.is_dir():
        return path
    known = ", ".join(sorted(ctx.artifacts)) or "none; run `repro reproduce catlip` to prepare them"
    raise FileNotFoundError(f"{system}: model={name!r} is neither a prepared artifact (known: {known}) nor a folder")


def sha256_files(files: Sequence[Path]) -> str:
    """One digest over the bytes of every file (in the given order), e.g. encoder + head weights."""
    h = hashlib.sha256()
    for f in files:
        h.update(Path(f).name.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def check_params(params: Mapping[str, Any], allowed: set[str], system: str) -> None:
    extra = set(params) - allowed
    if extra:
        raise ValueError(f"{system}: unknown parameter(s) {sorted(extra)} (known: {sorted(allowed)})")


_FEATURES: dict[tuple, torch.Tensor] = {}
"""(encoder sha256, image path, resize, crop) -> CLS feature. Several heads on one frozen encoder (the probes of
Table 1 and Figure 5) then decode and encode each evaluation image once per process, not once per run."""


def encode_requests(encoder: Any, encoder_sha: str, requests: Sequence[ImageRequest], device: str,
                    frozen: bool) -> torch.Tensor:
    """CLS features for a batch of image requests, following each request's resize/crop protocol (the system's
    own input size when the request states none). Cached only for ``frozen`` (shared) encoders."""
    from suite.vision.images import load_for_classification

    cfg = encoder.config
    keys = [(encoder_sha, str(r.path), r.resize, r.crop) for r in requests]
    todo = [i for i, k in enumerate(keys) if not frozen or k not in _FEATURES]
    feats: list[torch.Tensor | None] = [None if i in set(todo) else _FEATURES[k] for i, k in enumerate(keys)]
    if todo:
        x = torch.stack([load_for_classification(requests[i], default_size=cfg.image_size, mean=cfg.mean,
                                                 std=cfg.std) for i in todo]).to(device)
        with torch.no_grad():
            out = encoder(x).float().cpu()
        for i, f in zip(todo, out):
            feats[i] = f
            if frozen:
                _FEATURES[keys[i]] = f
    return torch.stack(feats)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- classification


class CatlipClassifier:
    """Single-label classification (``imagenet`` task): a ViT + linear head trained by ``transfer.py``.

    Params: ``model`` (alias or folder), ``topk`` (default 5). Output: ``ClassScores`` whose ``topk`` are the
    task's class indices (the head's outputs mapped through its ``task_index``, e.g. Imagenette's 10 outputs to
    their ImageNet-1k indices) and whose ``scores`` are softmax probabilities.
    """

    PARAMS = {"model", "topk"}

    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        from .transfer import load_classifier

        check_params(params, self.PARAMS, "catlip-classifier")
        self.path = resolve_checkpoint(params, ctx, "catlip-classifier")
        self.device = ctx.device
        self.topk = int(params.get("topk", 5))
        self.model = load_classifier(self.path, ctx.device)
        self.frozen = self.model.doc.get("mode") == "linear-probe"
        self.encoder_sha = sha256_files(self.model.files[:2])
        self._sha = sha256_files(self.model.files)
        self.task_index = torch.tensor(self.model.task_index)

    def identity(self) -> Mapping[str, Any]:
        doc = self.model.doc
        return {"weights_sha256": self._sha, "encoder_sha256": self.encoder_sha, "mode": doc.get("mode"),
                "head_init": doc.get("head_init"), "num_classes": doc.get("num_classes"),
                "input_size": self.model.encoder.config.image_size, "dtype": "float32"}

    def predict(self, requests: Sequence[ImageRequest], examples: Sequence[Example]) -> list[ClassScores]:
        feats = encode_requests(self.model.encoder, self.encoder_sha, requests, self.device, self.frozen)
        with torch.no_grad():
            probs = self.model.head(feats.to(self.device)).float().softmax(-1).cpu()
        k = min(self.topk, probs.shape[1])
        top = probs.topk(k, dim=-1)
        return [ClassScores(topk=self.task_index[idx].tolist(), scores=val.tolist())
                for val, idx in zip(top.values, top.indices)]


# The dense transfer systems (Tables 3-5) live in their own module.
from .dense_systems import CatlipDetector, CatlipMultiLabel, CatlipSegmenter  # noqa: E402,F401
