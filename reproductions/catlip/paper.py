"""CatLIP as a suite paper: the prepare step runs the mini pipeline and stores its numbers as an artifact record.

CatLIP's smoke/mini results are not per-example evaluations but measurements of
a training procedure (loss curves, step cost, Transfer Init coverage, label
throughput), so they are written once, with provenance, as
``runs/<profile>/artifacts/catlip/metrics.json`` and the tables read from there.
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

from suite.papers import Paper, PrepareContext
from suite.records import artifact_record_is_current, write_artifact_record

HERE = Path(__file__).parent
TIMING_KEYS = ("_ms", "_per_s", "_s", "ratio_clip_over_catlip", "peak_mem_mb")


def _code_key(profile: str) -> str:
    """Changes whenever the CatLIP code changes, so a stale record is recomputed rather than reused."""
    h = hashlib.sha256(profile.encode())
    for p in sorted(HERE.glob("*.py")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def prepare(ctx: PrepareContext) -> dict[str, Path]:
    if ctx.profile == "paper":
        return {}
    from .pipeline import run_mini

    out = ctx.artifacts_dir / "catlip"
    record = out / "metrics.json"
    key = _code_key(ctx.profile)
    if not ctx.force and artifact_record_is_current(record, key):
        print(f"[catlip] reusing {record}", flush=True)
        return {"catlip": out}
    print(f"[catlip] running the {ctx.profile} pipeline (labels, vocabulary, CatLIP + CLIP pre-training, "
          f"Transfer Init, cost) ...", flush=True)
    t0 = time.perf_counter()
    numbers = run_mini(out / "work", ctx.profile, data_dir=ctx.data_root)
    metrics = {k: {"value": float(v), "kind": "stat" if any(s in k for s in TIMING_KEYS) else "score"}
               for k, v in numbers.items() if isinstance(v, (int, float)) and v is not None}
    root = ctx.data_root
    files = [root / "image_text_coco_mini" / "pairs.jsonl", root / "imagenet" / "meta" / "imagenet_class_index.json"] \
        if root else []
    write_artifact_record(record, key=key, metrics=metrics, n_examples=int(numbers.get("n_pairs", 0)),
                          data_files=[f for f in files if f.is_file()], started=t0, seeds={"pipeline": 0})
    return {"catlip": out}


PAPER = Paper(
    name="catlip",
    title="CatLIP: CLIP-level Visual Recognition Accuracy with 2.7× Faster Pre-training on Web-scale Image-Text Data",
    arxiv="2404.15653",
    tables_dir=HERE / "tables",
    prepare=prepare,
    notes={
        "smoke": "Smoke profile: 3 training steps per method on the 795 real COCO caption pairs; numbers test the "
                 "pipeline, not the paper.",
        "mini": "Mini profile: tiny ViT (64 px) pre-trained for 3 epochs with CatLIP and with CLIP on 795 real COCO "
                "image-caption pairs (159 images); vocabulary Vτ=5 because 795 captions cannot reach the paper's 500.",
        "paper": "Paper profile: the transfer tables need corenet's released CatLIP checkpoints and the full datasets; "
                 "see reproductions/catlip for the pieces.",
    },
)
