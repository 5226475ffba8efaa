"""What ``repro reproduce catlip`` would do at a profile, what it needs and roughly what it costs (``--dry-run``).

Planning is offline and cheap: it checks that files exist, never loads a model. Prepare steps come first
(mapping released checkpoints, training probes, vocabulary statistics, the pre-trainings the paper did not
release), then one step per evaluation run of the tables. GPU-hours are rough A100 estimates from the
throughputs below (inference ~3x cheaper than a training step), stated so they can be checked.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from suite.papers import Missing, PlannedStep, PrepareContext, run_steps

# images/s on one A100 (bf16), evaluation forward at 224 px; training fwd+bwd is ~3x slower; 512 px ~6x slower
EVAL_IMG_PER_S = {"b16": 1500.0, "l16": 500.0, "h16": 250.0}
IMAGENET_TRAIN_IMAGES = 1_281_167
PLACES_TRAIN_IMAGES = 1_803_460
CC3M_PAIRS = 2_900_000


def _gpu_hours(images: float, size: str = "b16", res: int = 224, train: bool = False) -> float:
    rate = EVAL_IMG_PER_S[size] / (6.0 if res >= 512 else 1.0) / (3.0 if train else 1.0)
    return images / rate / 3600.0


def estimate_run(run: Any, samples: int | None) -> float | None:
    """Evaluation cost of one run at the paper profile, from the model alias (size, resolution)."""
    model = str(run.params_dict.get("model", ""))
    m = re.search(r"(b16|l16|h16)", model)
    if not m:
        return None
    n = samples if samples is not None else 50_000
    return round(_gpu_hours(n, m.group(1), 512 if model.endswith("-512") else 224), 3)


def _prepare_paper_steps(ctx: PrepareContext) -> list[PlannedStep]:
    from .paper_profile import CAPTIONS, IMAGENET_TRAIN, PLACES, RELEASE_URL, VOCAB_PKL, caption_file, checkpoint_root, releases

    root = ctx.data_root
    ck = checkpoint_root(root)
    where = f"under {ck}" if ck else "(set REPRO_DATA_DIR or REPRO_CATLIP_CHECKPOINTS)"
    steps = []
    have = set()
    for rel in releases():
        path = ck / rel.relpath if ck else None
        missing = () if path and path.is_file() else (Missing(
            f"checkpoint {rel.relpath}", f"download {RELEASE_URL + rel.relpath} and place it {where}"),)
        if not missing:
            have.add(rel.alias)
        steps.append(PlannedStep(what=f"map corenet checkpoint -> {rel.alias}", kind="prepare",
                                 checkpoint=rel.relpath, device="cpu", gpu_hours=0.0, missing=missing))
    vocab_missing = () if ck and (ck / VOCAB_PKL).is_file() else (Missing(
        f"vocabulary {VOCAB_PKL}", f"download {RELEASE_URL + VOCAB_PKL} and place it {where} (Transfer Init rows)"),)
    steps.append(PlannedStep(what="read corenet's synset vocabulary (24,320 synsets) for Transfer Init",
                             kind="prepare", checkpoint=VOCAB_PKL, device="cpu", gpu_hours=0.0, missing=vocab_missing))
    for alias, rel_root, n, data_name in (("catlip-lp-in1k-b16", IMAGENET_TRAIN, IMAGENET_TRAIN_IMAGES,
                                           "ImageNet-1k train (ImageFolder of wnid folders)"),
                                          ("catlip-lp-places-b16", PLACES, PLACES_TRAIN_IMAGES,
                                           "Places365-standard (official lists, data_256/, val_256/)")):
        missing = []
        if root is None or not (Path(root) / rel_root).is_dir():
            missing.append(Missing(f"data set {rel_root}", f"{data_name} at <data root>/{rel_root}"))
        if "catlip-enc-b16" not in have:
            missing.append(Missing("checkpoint pretrained_models/vit_base.pt",
                                   f"download {RELEASE_URL}pretrained_models/vit_base.pt and place it {where}"))
        steps.append(PlannedStep(what=f"linear probe (30 epochs on cached features) -> {alias}", kind="prepare",
                                 checkpoint="catlip-enc-b16", dataset=rel_root, samples=n, device=ctx.device,
                                 gpu_hours=round(_gpu_hours(n) + 0.1, 2), missing=tuple(missing)))
    for name in CAPTIONS:
        missing = () if caption_file(root, name) else (Missing(
            f"captions {name}", f"one caption per line (.txt) or a JSONL/TSV manifest at <data root>/{CAPTIONS[name]}"
                                f".{{jsonl,tsv,txt}}"),)
        steps.append(PlannedStep(what=f"vocabulary statistics of the {name} captions -> catlip-vocab-{name}",
                                 kind="prepare", dataset=CAPTIONS[name], device="cpu", gpu_hours=0.0,
                                 missing=missing))
    steps.append(PlannedStep(
        what="Table 1 CC3M row: pre-train ViT B/16 with CatLIP on CC3M (not released; train.py under torchrun)",
        kind="prepare", dataset="cc3m", samples=CC3M_PAIRS * 25, device=ctx.device,
        gpu_hours=round(_gpu_hours(CC3M_PAIRS * 25, train=True), 1),
        missing=(Missing("data set cc3m", "CC3M image-caption pairs as tar shards or a JSONL/TSV manifest; then "
                                          "torchrun -m reproductions.catlip.train --method catlip ..."),)))
    return steps


def _prepare_small_steps(profile: str, ctx: PrepareContext) -> list[PlannedStep]:
    from .pipeline import FLICKR, IMAGENET_META, fig5_alias
    from .pipeline import profile as get_profile

    p = get_profile(profile)
    root = ctx.data_root
    need = [(FLICKR, "Flickr8k pairs (image_text_flickr8k/pairs.jsonl)"),
            (IMAGENET_META, "ImageNet class index (imagenet/meta/imagenet_class_index.json)"),
            (p.transfer.root + "/train", "Imagenette train/val ImageFolder (imagenet/imagenette_112)")]
    missing = tuple(Missing(f"data set {rel}", f"{what} under the data root (REPRO_DATA_DIR)") for rel, what in need
                    if root is None or not (Path(root) / rel).exists())
    steps = [PlannedStep(what=f"{p.name}: captions -> synsets, vocabulary Vτ={p.v_tau}, statistics -> catlip-vocab",
                         kind="prepare", dataset=FLICKR, device="cpu", missing=missing),
             PlannedStep(what="cost of a CatLIP vs a CLIP step + cost model -> catlip-cost", kind="prepare",
                         device=ctx.device)]
    for m in ("catlip", "clip"):
        steps.append(PlannedStep(what=f"pre-train {m} ({p.pretrain.steps} steps x {p.pretrain.batch}) -> "
                                      f"catlip-enc-{m}", kind="prepare", dataset=FLICKR,
                                 samples=p.pretrain.steps * p.pretrain.batch, device=ctx.device, missing=missing))
    for alias in ["catlip-lp-catlip", "catlip-lp-clip", "catlip-lp-random", "catlip-ft-catlip", "catlip-ft-clip"] + [
            fig5_alias(h, pc) for pc in p.transfer.fractions for h in ("transfer", "random")]:
        steps.append(PlannedStep(what=f"train {alias}", kind="prepare", dataset=p.transfer.root, device=ctx.device,
                                 missing=missing))
    steps.append(PlannedStep(what="dense transfer (dense.prepare_dense): Tables 3-5 models", kind="prepare",
                             device=ctx.device))
    return steps


def catlip_plan(paper: Any, profile: str, ctx: PrepareContext) -> list[PlannedStep]:
    prepare = _prepare_paper_steps(ctx) if profile == "paper" else _prepare_small_steps(profile, ctx)
    made = {s.what.rsplit("-> ", 1)[-1] for s in prepare if "-> " in s.what and not s.missing}
    made |= {s.what.split("train ", 1)[-1] for s in prepare if s.what.startswith("train ") and not s.missing}
    blocked = {s.what.rsplit("-> ", 1)[-1]: s for s in prepare if "-> " in s.what and s.missing}

    def locate(model: str) -> Missing | None:
        if model in made or profile != "paper":
            return None
        if model in blocked:
            return blocked[model].missing[0]
        dense = re.match(r"^(catlip|clip)-(b16|l16|h16)-", model)  # dense.prepare_dense fine-tunes the encoders
        if dense and dense.group(1) == "clip":
            return Missing("checkpoint CLIP ViT B/16 (DataComp-1.3B)", "the paper's CLIP was not released; pre-train "
                                                                     "one with train.py --method clip")
        if dense:
            enc = f"catlip-enc-{dense.group(2)}"
            return None if enc in made else blocked[enc].missing[0]
        return Missing(f"model {model}", "not produced by the CatLIP prepare step")

    return prepare + run_steps(paper.tables(profile), ctx, locate_model=locate,
                               estimate=estimate_run if profile == "paper" else None)
