"""CatLIP (arXiv 2404.15653) as a suite paper: its tables, its prepare step, its figures and its plan.

The prepare step makes every model the tables' runs evaluate and every measurement they read:

* smoke / mini (``pipeline.py``): vocabulary statistics, cost, CatLIP and CLIP pre-training of a tiny ViT on
  Flickr8k, classification transfer to Imagenette (probes, fine-tuning, Figure 5), and the dense
  engineer's trainers (``dense.prepare_dense``);
* paper (``paper_profile.py``): corenet's released checkpoints mapped onto our ViT, linear probes trained on
  the full data sets, vocabulary statistics of local DataComp/CC3M captions.

Stages are artifact records keyed by their settings and code, so a rerun only redoes what changed.
"""
from __future__ import annotations

from pathlib import Path

from suite.papers import Paper, PrepareContext

HERE = Path(__file__).parent


def prepare(ctx: PrepareContext) -> dict[str, Path]:
    if ctx.profile == "paper":
        from .paper_profile import prepare_paper

        return prepare_paper(ctx)
    from .pipeline import run

    return run(ctx.artifacts_dir, ctx.profile, ctx.data_root, device=ctx.device, force=ctx.force,
               log=lambda m: print(m, flush=True))


def figures(results, runs_root: Path, profile: str, out_dir: Path) -> list[Path]:
    from .figures import draw_all

    return draw_all(results, runs_root, profile, out_dir)


def plan(profile: str, ctx: PrepareContext):
    from .plan import catlip_plan

    return catlip_plan(PAPER, profile, ctx)


PAPER = Paper(
    name="catlip",
    title="CatLIP: CLIP-level Visual Recognition Accuracy with 2.7× Faster Pre-training on Web-scale Image-Text Data",
    arxiv="2404.15653",
    tables_dir=HERE / "tables",
    prepare=prepare,
    figures=figures,
    plan=plan,
    notes={
        "smoke": "Smoke profile: the mini pipeline at a sliver of its size (3 pre-training steps on 400 Flickr8k "
                 "pairs, probes and one fine-tuning epoch on 2% of Imagenette, 40 validation images); the numbers "
                 "test the pipeline, not the paper.",
        "mini": "Mini profile: a tiny ViT (4 layers, width 192, 64 px) pre-trained with CatLIP and with CLIP for the "
                "same 800 steps of 64 Flickr8k image-caption pairs (real captions, 8,091 images), vocabulary "
                "Vτ = 100 (257 synsets); transfer to Imagenette (10 ImageNet-1k classes, 4,000 training / 3,925 validation "
                "images) by linear probe and fine-tuning; evaluation through the imagenet task adapter. The paper's "
                "numbers are for ViT B/L/H pre-trained on 1.3 B pairs and are shown beside ours, not compared.",
        "paper": "Paper profile: corenet's released CatLIP checkpoints (pre-trained and fine-tuned, mapped onto our "
                 "ViT), full ImageNet-1k / Places365 / COCO / ADE20k from local paths; `repro reproduce catlip "
                 "--profile paper --dry-run` lists what is missing.",
    },
    other_tables={
        "Table 6": "pre-training hyper-parameters, not results",
        "Tables 7-8": "transfer hyper-parameters, not results (used as our settings where stated)",
        "Figure 4": "CC3M pre-training curves over 25-100 epochs: needs four ViT B/16 pre-trainings per method",
        "Figure 7": "fine-tuning version of Figure 5: curves only, not regenerated",
        "Figure 8": "DataComp pre-training loss curves of B/L/H: needs the pre-training itself",
    },
)
