"""LayerSkip as a suite paper: what each profile trains or loads, its tables, and its figures.

``smoke`` and ``mini`` train a baseline and a LayerSkip (LD+EE, the paper's TOPv2
finetune recipe: p_max 0.2, e_scale 1.0, gradual curriculum) Llama of the same
shape for the same number of steps on real TOPv2 data, then measure per-layer
quality of both; the tables' runs decode with these checkpoints. ``paper`` loads
released checkpoints (Tables 1-3) from the local HF cache, checkpoints the user
supplied for the models the paper never released (Tables 4-7, 11; see ``plan.USER_CHECKPOINTS``),
and runs the lm-eval calls that table rows declare (``produce: {kind: lm-eval}``) into
artifact records, task by task and resumable. ``plan`` says beforehand what will run and
what is missing (``repro reproduce layerskip --dry-run``).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Mapping

from suite.cores import CoreShare
from suite.papers import Paper, PrepareContext
from suite.records import artifact_record_is_current, write_artifact_record, write_json_atomic

HERE = Path(__file__).parent
DOMAINS = ("weather",)
N_LAYERS = 6
"""Exits at layers 5/3/2 of 6 stand for the paper's 18/12/6 of 24 (table specs use the same numbers)."""
VARIANTS = (("baseline", "baseline"), ("layerskip", "ld+ee"))
EVAL_N = {"smoke": 16, "mini": 100}
"""Test examples for the per-layer curves (the first N of the official weather test file)."""


def train_config(profile: str, variant: str):
    from .training.recipe import setting

    # Both models of a profile train in parallel, one process per core, one thread each (measured faster
    # than two threads per process on 2 cores); the one still running when the other ends takes both cores
    # (``_train_one``). Precision: bf16 autocast where the hardware has native bf16
    # (TrainConfig.precision "auto"), else fp32.
    shape: dict[str, Any] = dict(n_layers=N_LAYERS, domains=DOMAINS, seed=0, threads=1,
                                 setting="topv2-finetune", log_every=50)
    if profile == "smoke":
        # Enough to learn (measured: EM about 0.5 on the first 16 weather test utterances, drafts both accepted
        # and rejected) so that every gated claim compares real numbers, not 0 == 0.
        shape.update(dim=128, n_heads=4, intermediate_size=384, max_seq_len=96, steps=400, batch_size=32, lr=3e-3,
                     warmup_steps=10, checkpoint_every=0)
    elif profile == "mini":
        shape.update(dim=256, n_heads=4, intermediate_size=704, max_seq_len=96, steps=2000, batch_size=64,
                     lr=2e-3, warmup_steps=50, checkpoint_every=100)
    else:
        raise ValueError(f"no training config for profile {profile!r}")
    # LayerSkip knobs from the paper's TOPv2 setting; shape and optimiser scaled to the profile.
    return setting("topv2-finetune", recipe_only=True, variant=variant, **shape)


TRAIN_IMPL = 2
"""Bumped when training computes differently for the same config (2: CPU fp32 linears through oneDNN,
``suite.cpu_linear``), so that models cached by an older implementation are retrained rather than gated against
a baseline pinned from the new one."""


def _config_key(cfg) -> str:
    import hashlib

    payload = {**cfg.to_dict(), "train_impl": TRAIN_IMPL}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _train_one(ctx: PrepareContext, name: str, variant: str) -> Path:
    from .topv2 import build_tokenizer, load_split, make_train_batches
    from .training.trainer import train

    cfg = train_config(ctx.profile, variant)
    key = _config_key(cfg)
    work = ctx.artifacts_dir / f"{name}.train"
    final_alias = ctx.artifacts_dir / name
    marker = final_alias / "train_config_key"
    if not ctx.force and marker.is_file() and marker.read_text() == key:
        print(f"[layerskip] {name}: reusing trained checkpoint {final_alias}", flush=True)
        return final_alias
    if ctx.force or ((work / "config_key").is_file() and (work / "config_key").read_text() != key):
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    (work / "config_key").write_text(key)
    print(f"[layerskip] training {name} ({variant}): {cfg.n_layers}x{cfg.dim}, {cfg.steps} steps, "
          f"batch {cfg.batch_size}", flush=True)
    train_rows = load_split("train", DOMAINS, ctx.data_root)
    tokenizer = build_tokenizer(train_rows)  # deterministic: both processes build the same vocabulary
    batches = make_train_batches(tokenizer, train_rows, cfg.batch_size, seed=cfg.seed, max_len=cfg.max_seq_len)
    # side-by-side trainers share the cores: when one finishes, the other takes its core (same weights)
    share = CoreShare(ctx.artifacts_dir / ".cores")
    with share.worker(name):
        record = train(cfg, batches, work, tokenizer=tokenizer, threads=share.threads,
                       log=lambda m: print(f"[{name}] {m}", flush=True))
    tmp = ctx.artifacts_dir / f".{name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(work / "final", tmp)
    (tmp / "train_config_key").write_text(key)
    write_json_atomic(tmp / "train_record.json", record)
    shutil.rmtree(final_alias, ignore_errors=True)
    os.replace(tmp, final_alias)
    return final_alias


def _layer_curves(ctx: PrepareContext, ckpts: Mapping[str, Path], rows, data_files) -> None:
    """Per-layer early-exit quality of both models: the paper's central training claim, as one record."""
    from .checkpoint import load_llama
    from .topv2 import evaluate, load_tokenizer

    out = ctx.artifacts_dir / "layer_curves"
    key = "|".join(f"{n}:{(p / 'train_config_key').read_text()}" for n, p in sorted(ckpts.items())) + f"|{len(rows)}"
    if not ctx.force and artifact_record_is_current(out / "metrics.json", key):
        return
    metrics: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for name, path in sorted(ckpts.items()):
        model = load_llama(path)
        tok = load_tokenizer(path)
        L = model.config.n_layers
        print(f"[layerskip] per-layer evaluation of {name} on {len(rows)} test examples ...", flush=True)
        res = evaluate(model, tok, rows, max_new_tokens=60, exit_layers=list(range(1, L)))
        for layer in range(1, L + 1):
            em = res["exact_match"] if layer == L else res[f"exact_match_E{layer}"]
            metrics[f"{name}_exact_match_l{layer}"] = {"value": em, "n": len(rows), "kind": "score"}
            metrics[f"{name}_next_token_acc_l{layer}"] = {"value": res["next_token_acc_per_layer"][layer - 1],
                                                          "n": len(rows), "kind": "score"}
        rec = json.loads((path / "train_record.json").read_text())
        for k in ("wall_s", "tokens_per_s", "steps_per_s", "final_step"):
            if k in rec:
                metrics[f"{name}_train_{k}"] = {"value": float(rec[k]), "kind": "stat"}
        if rec.get("losses"):
            metrics[f"{name}_train_final_loss"] = {"value": float(rec["losses"][-1]["loss"]), "kind": "stat"}
    write_artifact_record(out / "metrics.json", key=key, metrics=metrics, n_examples=len(rows),
                          data_files=list(data_files), started=t0, seeds={"train": 0})


def prepare(ctx: PrepareContext) -> dict[str, Path]:
    if ctx.profile == "paper":
        from .plan import user_aliases

        run_lm_eval(ctx, PAPER.tables(ctx.profile))
        return user_aliases(ctx.artifacts_dir)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from suite.tasks.topv2 import data_file

    from .topv2 import load_split

    test_rows = load_split("test", DOMAINS, ctx.data_root)[: EVAL_N[ctx.profile]]
    files = [data_file(d, s).resolve(ctx.data_root, download=False) for d in DOMAINS for s in ("train", "test")]
    # The two models are independent: train them side by side, one core each.
    with ProcessPoolExecutor(max_workers=min(len(VARIANTS), os.cpu_count() or 1),
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {name: pool.submit(_train_one, ctx, name, variant) for name, variant in VARIANTS}
        ckpts = {name: f.result() for name, f in futures.items()}
    _layer_curves(ctx, ckpts, test_rows, files)
    return ckpts


def run_lm_eval(ctx: PrepareContext, specs) -> list[str]:
    """Run every lm-eval call the tables declare, one lm-eval task at a time, skipping tasks whose stored scores
    were made with the same settings (so an interrupted preparation resumes). Calls whose checkpoint or data set
    is missing are skipped with a line (the plan lists them). Returns the tasks run, as ``artifact:task``."""
    from .lm_eval_bridge import pending_tasks, record
    from .plan import checkpoint_fingerprint, lm_eval_calls, lm_eval_dataset_missing, locate_model, resolve_model

    runs_root = ctx.artifacts_dir.parent.parent
    done = []
    for call in lm_eval_calls(specs):
        lacking = locate_model(call.model, ctx)
        if lacking is not None:
            print(f"[layerskip] lm-eval -> {call.artifact}: skipped, {lacking.thing} is missing", flush=True)
            continue
        ckpt = resolve_model(call.model, ctx.artifacts_dir)
        fingerprint = checkpoint_fingerprint(ckpt)
        keys = {t: call.task_key(t, fingerprint) for t in call.tasks}
        todo = list(keys) if ctx.force else pending_tasks(call.artifact, keys, runs_root=runs_root,
                                                            profile=ctx.profile)
        for task in todo:
            no_data = None if call.include_path else lm_eval_dataset_missing(task)
            if no_data is not None:
                print(f"[layerskip] lm-eval {task} -> {call.artifact}: skipped, {no_data.thing} is missing", flush=True)
                continue
            print(f"[layerskip] lm-eval {task} on {call.model} -> artifact {call.artifact}", flush=True)
            record(call.artifact, model_args=call.model_args_string(ckpt), tasks=[task], runs_root=runs_root,
                   profile=ctx.profile, num_fewshot=call.num_fewshot, limit=call.limit,
                   include_path=call.include_path, key=keys[task], device=ctx.device)
            done.append(f"{call.artifact}:{task}")
    return done


def plan(profile: str, ctx: PrepareContext):
    from .plan import plan as make_plan

    return make_plan(profile, ctx, PAPER.tables(profile))


def figures(results, runs_root: Path, profile: str, out_dir: Path) -> list[Path]:
    from .figures import draw_all

    return draw_all(results, runs_root, profile, out_dir)


PAPER = Paper(
    name="layerskip",
    title="LayerSkip: Enabling Early Exit Inference and Self-Speculative Decoding",
    arxiv="2404.16710",
    tables_dir=HERE / "tables",
    prepare=prepare,
    figures=figures,
    plan=plan,
    other_tables={
        "Tables 8, 9 and 10": "training configurations (batch sizes and steps, learning rates, model shapes), not "
                              "results; the recipe settings use them, see docs/papers/layerskip.md",
        "Figures 2-12": "plots; the per-layer table stands for the central claim of Figures 2 and 9",
    },
    notes={
        "smoke": "Smoke profile: 6-layer, 128-wide Llamas trained for 400 steps on TOPv2 weather; numbers test the "
                 "pipeline, not the paper.",
        "mini": "Mini profile: two 6-layer, 256-wide Llamas (7M parameters; baseline and LayerSkip LD+EE with the "
                "paper's TOPv2 recipe: p_max 0.2, e_scale 1.0, gradual curriculum), trained here for the same 2,000 "
                "steps (batch 64) on the TOPv2 weather domain (23,054 training utterances), evaluated on the first "
                "100 weather test utterances. Exit layers 5/3/2 of 6 stand for the paper's 18/12/6 of 24.",
        "paper": "Paper profile: released checkpoints from the local Hugging Face cache (Tables 1-3: "
                 "facebook/layerskip-*, meta-llama/*); the lm-eval columns of Tables 1-2 run through lm-eval 0.4.13 "
                 "into artifact records; the models the paper never released (Tables 4-7, 11) come from "
                 "directories the user names (REPRO_LAYERSKIP_TOPV2_*, _SCRATCH_*, _CODE_*). `repro reproduce "
                 "layerskip --profile paper --dry-run` lists what is missing and how to get it.",
    },
)
