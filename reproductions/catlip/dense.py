"""Fine-tune every pre-trained encoder on the dense transfer tasks of arXiv 2404.15653 v1 (Tables 3, 4, 5).

``prepare_dense`` is what the CatLIP prepare step calls: for each encoder alias (``catlip``, ``clip``,
``random``, ...) it trains a COCO multi-label model (Table 3), a Mask R-CNN (Table 5) and, where
ADE20k is present, a DeepLabv3 model (Table 4), and returns artifact aliases such as
``catlip-maskrcnn`` -> checkpoint folder. Evaluation is not done here: the tables' runs evaluate
these folders through the suite's task adapters.

Each folder also holds an artifact record (``metrics.json``: steps, losses, time per step) whose key
hashes the recipe, the training data, the encoder weights and this code, so an unchanged model is
reused and a changed one is retrained; training itself resumes from its last saved state.

Profiles (what is ours, not the paper's, is said in the table specs):

* ``paper``: Table 7c / 8 recipes (512 px multi-label, 1024 px ViTDet Mask R-CNN, 512 px DeepLabv3);
* ``mini``: 2-core CPU, fp32: tiny ViT, 96 px multi-label for 8 epochs, a slimmed Mask R-CNN at
  256 px for 1.5 epochs, on the 208 COCO train2017 images of coco128 + coco_mini;
* ``smoke``: the same pipeline for 2 steps on a handful of images.

Run as a module (also under ``torchrun`` for data parallel training)::

    python -m reproductions.catlip.dense --encoder catlip=DIR --encoder clip=DIR --out OUT --profile mini
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from suite.records import artifact_record_is_current, write_artifact_record

from .dense_ckpt import DenseModel, new_dense, save_dense
from .dense_data import CocoSet, DenseDataError, ade20k_pairs, detection_item, read_coco
from .dense_detection import DetectorConfig, detection_step_loss
from .dense_multilabel import MultiLabelConfig, multilabel_item, multilabel_step_loss
from .dense_segmentation import SegConfig, seg_step_loss
from .dense_train import FitConfig, _barrier, _world, fit, fit_config_json

HERE = Path(__file__).parent
COCO_MINI_TRAIN = (("coco/coco128/annotations/instances_train2017.json", "coco/coco128/train2017"),
                   ("coco/coco_mini/annotations/instances_train2017.json", "coco/coco_mini/train2017"))
COCO_FULL_TRAIN = (("coco/annotations/instances_train2017.json", "coco/train2017"),)


@dataclass(frozen=True)
class Recipe:
    """One dense fine-tuning: head hyper-parameters, optimiser/schedule, training data, epochs."""

    kind: str
    head: dict[str, Any]
    fit: FitConfig
    epochs: float
    train: tuple[tuple[str, str], ...] = ()
    """(annotation file, image folder) under the data root; ADE20k uses its fixed layout instead."""
    limit: int | None = None
    """Use only the first N training images (smoke)."""
    cache: bool = True
    """Keep decoded training images in memory (small data sets only)."""
    encoders: tuple[str, ...] | None = None
    """Train only on these encoder aliases (None = all given): e.g. no Mask R-CNN on the untrained control."""

    def key_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "head": self.head, "fit": fit_config_json(self.fit), "epochs": self.epochs,
                "train": [list(t) for t in self.train], "limit": self.limit}


def _mini_detector(size: int, fpn: int, box: int, convs: int, anchors: tuple[int, ...], roi: int) -> dict[str, Any]:
    return DetectorConfig(min_size=size, max_size=size, fpn_channels=fpn, box_head_dim=box, mask_head_dim=fpn,
                          mask_head_convs=convs, anchor_sizes=anchors, rpn_pre_nms_train=1000, rpn_post_nms_train=500,
                          rpn_pre_nms_test=500, rpn_post_nms_test=300, roi_batch=roi).to_json()


PROFILES: dict[str, dict[str, Recipe]] = {
    "smoke": {
        "multilabel": Recipe("multilabel", MultiLabelConfig(resolution=64).to_json(),
                             FitConfig(steps=0, batch_size=4, lr=1e-3, min_lr=1e-5, warmup_steps=0), 1.0,
                             COCO_MINI_TRAIN[1:], limit=8),
        "maskrcnn": Recipe("maskrcnn", _mini_detector(128, 32, 64, 1, (8, 16, 32, 64, 128), 64),
                           FitConfig(steps=0, batch_size=2, lr=1e-4, weight_decay=0.1, schedule="multistep",
                                     milestones=(0.88, 0.96), layer_decay=0.7), 0.5, COCO_MINI_TRAIN[1:], limit=4,
                           encoders=("catlip", "clip")),
        "deeplabv3": Recipe("deeplabv3", SegConfig(crop=64, aspp_channels=32, atrous_rates=(2, 4, 6),
                                                   short_side_range=(64, 96), eval_short_side=64).to_json(),
                            FitConfig(steps=0, batch_size=2, lr=1e-3, weight_decay=0.1), 0.5, limit=4),
    },
    "mini": {
        "multilabel": Recipe("multilabel", MultiLabelConfig(resolution=96).to_json(),
                             FitConfig(steps=0, batch_size=16, lr=3e-4, min_lr=1e-6, weight_decay=0.05,
                                       warmup_steps=10, log_every=20), 8.0, COCO_MINI_TRAIN),
        "maskrcnn": Recipe("maskrcnn", _mini_detector(256, 64, 256, 2, (16, 32, 64, 128, 256), 128),
                           FitConfig(steps=0, batch_size=2, lr=2e-4, weight_decay=0.1, warmup_steps=20,
                                     schedule="multistep", milestones=(0.88, 0.96), layer_decay=0.7, grad_clip=1.0,
                                     checkpoint_every=50, log_every=25), 1.5, COCO_MINI_TRAIN,
                           encoders=("catlip", "clip")),
        "deeplabv3": Recipe("deeplabv3", SegConfig(crop=128, aspp_channels=128, atrous_rates=(3, 6, 9),
                                                   short_side_range=(96, 192), eval_short_side=128).to_json(),
                            FitConfig(steps=0, batch_size=4, lr=3e-4, min_lr=3e-6, weight_decay=0.1,
                                      warmup_steps=10, log_every=20), 2.0),
    },
    "paper": {  # Tables 7c / 8a / 8b (B/16 values where they differ by size)
        "multilabel": Recipe("multilabel", MultiLabelConfig(resolution=512).to_json(),
                             FitConfig(steps=0, batch_size=32, lr=1e-5, min_lr=1e-6, weight_decay=0.05,
                                       checkpoint_every=1000, log_every=100), 10.0, COCO_FULL_TRAIN, cache=False),
        "maskrcnn": Recipe("maskrcnn", DetectorConfig().to_json(),
                           FitConfig(steps=0, batch_size=2, lr=3e-4, weight_decay=0.1, warmup_steps=250,
                                     warmup_init_lr=1e-5, schedule="multistep", milestones=(22 / 25, 24 / 25),
                                     layer_decay=0.7, checkpoint_every=1000, log_every=100), 25.0, COCO_FULL_TRAIN,
                           cache=False),
        "deeplabv3": Recipe("deeplabv3", SegConfig().to_json(),
                            FitConfig(steps=0, batch_size=4, lr=3e-5, min_lr=3e-6, weight_decay=0.1,
                                      checkpoint_every=1000, log_every=100), 50.0, cache=False),
    },
}


class LazyItems(Sequence):
    """Training items made on first use (and kept when ``cache``): decoding stays out of start-up time."""

    def __init__(self, sources: Sequence[Any], make: Callable[[Any], Any], cache: bool):
        self.sources, self.make, self.cache = list(sources), make, cache
        self._done: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> Any:  # type: ignore[override]
        if i in self._done:
            return self._done[i]
        item = self.make(self.sources[i])
        if self.cache:
            self._done[i] = item
        return item


def _coco_sets(recipe: Recipe, data_root: Path) -> list[CocoSet]:
    sets = [read_coco(Path(data_root) / ann, Path(data_root) / img) for ann, img in recipe.train]
    for s in sets[1:]:
        if s.category_ids != sets[0].category_ids:
            raise DenseDataError(f"{s.ann_file}: categories differ from {sets[0].ann_file}; one label space is needed")
    return sets


def training_data(recipe: Recipe, data_root: Path) -> tuple[Sequence[Any], list[Path]]:
    """(training items, annotation files read) for a recipe."""
    if recipe.kind == "deeplabv3":
        return ade20k_pairs(data_root, "training")[:recipe.limit], []
    sets = _coco_sets(recipe, data_root)
    images = [(im, sets[0].category_ids) for s in sets for im in s.images][:recipe.limit]
    if recipe.kind == "multilabel":
        res = int(recipe.head["resolution"])
        make = lambda src: multilabel_item(src[0], src[1], res)
    else:
        det = DetectorConfig.from_json(recipe.head)
        make = lambda src: detection_item(src[0], src[1], det.min_size, det.max_size)
    return LazyItems(images, make, recipe.cache), [s.ann_file for s in sets]


def step_loss_for(dm: DenseModel, device: str) -> Callable:
    """The per-batch loss of a dense model (the detector's comes from the backend that built it)."""
    head = dm.config["head"]
    if dm.kind == "multilabel":
        return multilabel_step_loss(int(head["resolution"]), device)
    if dm.kind == "maskrcnn":
        return detection_step_loss(dm.backend, device)
    return seg_step_loss(SegConfig.from_json(head), device)


def labels_of(recipe: Recipe, data_root: Path) -> dict[str, Any]:
    """The label space the head predicts in (index i -> COCO category id / ADE20k class i + 1)."""
    if recipe.kind == "deeplabv3":
        return {"space": "ade20k-150", "offset": 1}
    s = _coco_sets(recipe, data_root)[0]
    return {"space": "coco", "category_ids": list(s.category_ids), "names": list(s.category_names)}


def steps_for(recipe: Recipe, n_items: int, world: int) -> int:
    return max(1, math.ceil(recipe.epochs * n_items / (recipe.fit.batch_size * world)))


def code_hash() -> str:
    """The training code (the systems, which only evaluate, are left out so editing them retrains nothing)."""
    h = hashlib.sha256()
    for p in sorted(HERE.glob("dense*.py")) + [HERE / "models.py", HERE / "losses.py"]:
        if p.name != "dense_systems.py":
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def data_sha256(recipe: Recipe, data_root: Path) -> str:
    """The training annotations (COCO JSONs; ADE20k's fixed layout is keyed by its file names)."""
    h = hashlib.sha256()
    if recipe.kind == "deeplabv3":
        for pair in ade20k_pairs(data_root, "training")[:recipe.limit]:
            h.update(pair.image.name.encode())
    for ann, _ in recipe.train:
        path = Path(data_root) / ann
        if not path.is_file():
            raise DenseDataError(f"{path}: training annotations not found (the {recipe.kind} recipe trains on "
                                 f"{', '.join(a for a, _ in recipe.train)} under the data root)")
        h.update(path.read_bytes())
    return h.hexdigest()


def encoder_sha256(ckpt: Path) -> str:
    """sha256 over the encoder checkpoint's weights and config."""
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.json"):
        with open(Path(ckpt) / name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def recipe_key(recipe: Recipe, encoder_sha: str, profile: str, data_sha: str) -> str:
    blob = json.dumps({"recipe": recipe.key_json(), "encoder": encoder_sha, "profile": profile, "code": code_hash(),
                       "data": data_sha}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


@dataclass
class DenseJob:
    alias: str
    encoder_dir: Path
    recipe: Recipe
    out: Path
    key: str = ""
    log: Callable[[str], None] | None = print


def _load_encoder(ckpt: Path, device: str) -> Any:
    from .models import load_encoder

    return load_encoder(ckpt, device)


def train_one(job: DenseJob, data_root: Path, device: str, seed: int = 0) -> Path:
    """Train one dense model (resuming a killed run), save it, write its artifact record; returns its folder."""
    rank, world = _world()
    t0 = time.perf_counter()
    items, files = training_data(job.recipe, data_root)
    steps = steps_for(job.recipe, len(items), world)
    cfg = replace(job.recipe.fit, steps=steps, seed=seed)
    encoder = _load_encoder(job.encoder_dir, device).train()
    source = {"encoder_alias": job.alias, "encoder_sha256": encoder_sha256(job.encoder_dir)}
    dm: DenseModel = new_dense(job.recipe.kind, encoder, job.recipe.head, labels_of(job.recipe, data_root), source)
    state_dir = job.out / f"train_state-{job.key}"
    for stale in job.out.glob("train_state-*"):
        if stale != state_dir and rank == 0:
            shutil.rmtree(stale)
    res = fit(dm.model, step_loss_for(dm, device), items, cfg, state_dir, device=device, encoder_prefix=_encoder_prefix(dm),
              num_layers=encoder.config.layers, log=job.log, name=f"{job.alias}-{job.recipe.kind}")
    if rank == 0:
        save_dense(job.out, dm, {"recipe": job.recipe.key_json(), "steps": steps, "world_size": world})
        n = max(1, len(res.losses) // 10)
        metrics = {"train_steps": {"value": float(res.steps_done), "kind": "score"},
                   "train_images": {"value": float(len(items)), "kind": "score"},
                   "first_loss": {"value": sum(res.losses[:n]) / n, "kind": "score"},
                   "last_loss": {"value": sum(res.losses[-n:]) / n, "kind": "score"},
                   "s_per_step": {"value": float(res.s_per_step or 0.0), "kind": "stat"}}
        write_artifact_record(job.out / "metrics.json", key=job.key, metrics=metrics, n_examples=len(items),
                              data_files=files, started=t0, seeds={"fine_tune": seed},
                              extra={"encoder": source, "resumed_from": res.resumed_from})
        shutil.rmtree(state_dir, ignore_errors=True)
    _barrier()
    return job.out


def _encoder_prefix(dm: DenseModel) -> str:
    return "backbone.encoder." if dm.kind == "maskrcnn" else "encoder."


def available_kinds(data_root: Path) -> list[str]:
    """Kinds whose training data is present: ADE20k is absent from the mini data, so Table 4 trains only where it is."""
    kinds = ["multilabel", "maskrcnn"]
    try:
        ade20k_pairs(data_root, "training")
        kinds.append("deeplabv3")
    except DenseDataError:
        pass
    return kinds


def prepare_dense(encoder_ckpts: dict[str, Path], out_dir: Path, profile: str, data_root: Path, device: str,
                  kinds: Sequence[str] | None = None, log: Callable[[str], None] | None = print) -> dict[str, Path]:
    """Train (or reuse) ``<alias>-<kind>`` for every encoder alias and kind; returns alias -> checkpoint folder."""
    if profile not in PROFILES:
        raise ValueError(f"dense transfer: unknown profile {profile!r} (known: {', '.join(PROFILES)})")
    if data_root is None:
        raise DenseDataError("dense transfer needs the data root (set REPRO_DATA_DIR or pass --data-root)")
    out: dict[str, Path] = {}
    for kind in (kinds or available_kinds(Path(data_root))):
        recipe = PROFILES[profile][kind]
        data_sha = data_sha256(recipe, Path(data_root))
        for alias, ckpt in encoder_ckpts.items():
            if recipe.encoders is not None and alias not in recipe.encoders:
                continue
            ckpt = Path(ckpt)
            job = DenseJob(alias, ckpt, recipe, Path(out_dir) / f"{alias}-{kind}", log=log)
            job.key = recipe_key(recipe, encoder_sha256(ckpt), profile, data_sha)
            current = artifact_record_is_current(job.out / "metrics.json", job.key) and (job.out / "config.json").is_file()
            if current:
                if log:
                    log(f"[dense] reusing {job.out}")
            else:
                train_one(job, Path(data_root), device)
            out[f"{alias}-{kind}"] = job.out
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse
    import os

    from suite.devices import resolve_device

    ap = argparse.ArgumentParser(description="CatLIP dense transfer fine-tuning (Tables 3-5); works under torchrun")
    ap.add_argument("--encoder", action="append", required=True, metavar="ALIAS=DIR",
                    help="pre-trained encoder checkpoint folder (repeat for several)")
    ap.add_argument("--out", required=True, help="folder for the <alias>-<kind> checkpoints")
    ap.add_argument("--profile", default="mini", choices=sorted(PROFILES))
    ap.add_argument("--data-root", default=os.environ.get("REPRO_DATA_DIR"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--kind", action="append", choices=sorted(PROFILES["mini"]), help="only these heads")
    a = ap.parse_args(argv)
    encs = {}
    for e in a.encoder:
        if "=" not in e:
            ap.error(f"--encoder {e!r}: expected ALIAS=DIR")
        alias, d = e.split("=", 1)
        encs[alias] = Path(d)
    device = resolve_device(a.device)
    res = prepare_dense(encs, Path(a.out), a.profile, Path(a.data_root) if a.data_root else None, device, a.kind)
    if _world()[0] == 0:
        print(json.dumps({k: str(v) for k, v in res.items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
