"""What ``repro reproduce layerskip`` does at each profile, what it lacks, and roughly what it costs.

Checkpoints come from three places (checked offline, nothing is loaded or downloaded):

* released ones (``facebook/layerskip-*``, ``meta-llama/*``): the local Hugging Face hub cache
  (``HF_HUB_CACHE`` / ``HF_HOME``), layout ``models--<org>--<name>/snapshots/<rev>/``;
* ones the paper never released (TOPv2 1.5B, from-scratch 1.5B/7B, code-finetuned 7B): a directory named by
  an environment variable (:data:`USER_CHECKPOINTS`), or ``<runs>/paper/artifacts/<alias>/``;
* at smoke/mini, the models the prepare step trains (``baseline``, ``layerskip``).

GPU-hour estimates are deliberately rough: generated tokens per example (:data:`TOKENS_PER_EXAMPLE`) times a
time per token scaled from the paper's own H100 throughput (Llama2 7B autoregressive 62.7 tok/s and 13B
37.2 tok/s in Table 3, i.e. about 16 and 27 ms/token), or from a measured time per token
(``benchmarks/layerskip_gpu_check.sh`` passes its measurement to :func:`main`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from suite.papers import Missing, PlannedStep, PrepareContext, run_steps
from suite.tables import TableSpec


@dataclass(frozen=True)
class UserCheckpoint:
    env: str
    what: str
    how: str


_TRAIN = "python -m reproductions.layerskip.training.trainer --setting {setting} --variant {variant} --out DIR"
USER_CHECKPOINTS: dict[str, UserCheckpoint] = {
    "topv2-baseline": UserCheckpoint(
        "REPRO_LAYERSKIP_TOPV2_BASELINE", "Llama 1.5B finetuned on TOPv2 without LayerSkip (Tables 6, 7, 11)",
        "never released; train it with " + _TRAIN.format(setting="topv2-finetune", variant="baseline")),
    "topv2-layerskip": UserCheckpoint(
        "REPRO_LAYERSKIP_TOPV2_LAYERSKIP", "Llama 1.5B finetuned on TOPv2 with LayerSkip (Tables 6, 7, 11)",
        "never released; train it with " + _TRAIN.format(setting="topv2-finetune", variant="ld+ee")),
    "scratch-1.5b-baseline": UserCheckpoint(
        "REPRO_LAYERSKIP_SCRATCH_1_5B_BASELINE", "Llama2 1.5B pretrained from scratch, no LayerSkip (Table 4)",
        "never released; pretrain it on ~26B tokens with the recipe setting pretrain-llama2-1.5b, variant baseline "
        "(our trainer's command line trains on TOPv2 only: bring your own corpus), save it as HF safetensors"),
    "scratch-1.5b-layerskip": UserCheckpoint(
        "REPRO_LAYERSKIP_SCRATCH_1_5B_LAYERSKIP", "Llama2 1.5B pretrained from scratch with LayerSkip (Tables 4, 7)",
        "never released; pretrain it on ~26B tokens with the recipe setting pretrain-llama2-1.5b, variant ld+ee "
        "(bring your own corpus), save it as HF safetensors"),
    "scratch-7b-baseline": UserCheckpoint(
        "REPRO_LAYERSKIP_SCRATCH_7B_BASELINE", "Llama2 7B pretrained from scratch, no LayerSkip (Table 4)",
        "never released; pretrain it on ~26B tokens with the recipe setting pretrain-llama2-7b, variant baseline "
        "(bring your own corpus), save it as HF safetensors"),
    "scratch-7b-layerskip": UserCheckpoint(
        "REPRO_LAYERSKIP_SCRATCH_7B_LAYERSKIP", "Llama2 7B pretrained from scratch with LayerSkip (Table 4)",
        "never released; pretrain it on ~26B tokens with the recipe setting pretrain-llama2-7b, variant ld+ee "
        "(bring your own corpus), save it as HF safetensors"),
    "code-7b-baseline": UserCheckpoint(
        "REPRO_LAYERSKIP_CODE_7B_BASELINE", "Llama1 7B finetuned on code without LayerSkip (Table 5)",
        "never released (facebook/layerskip-codellama-* is another base model); finetune Llama1 7B on ~5.2B code "
        "tokens with the recipe setting code-finetune-llama1-7b, variant baseline, save it as HF safetensors"),
    "code-7b-layerskip": UserCheckpoint(
        "REPRO_LAYERSKIP_CODE_7B_LAYERSKIP", "Llama1 7B finetuned on code with LayerSkip (Table 5)",
        "never released; finetune Llama1 7B on ~5.2B code tokens with the recipe setting code-finetune-llama1-7b, "
        "variant ld+ee, save it as HF safetensors"),
}
TRAINED_HERE = ("baseline", "layerskip")
"""Aliases the smoke/mini prepare step trains before any run needs them."""

MODEL_SHAPES: dict[str, tuple[float, int]] = {
    "meta-llama/Llama-2-7b-hf": (6.7, 32), "facebook/layerskip-llama2-7B": (6.7, 32),
    "meta-llama/Llama-2-13b-hf": (13.0, 40), "facebook/layerskip-llama2-13B": (13.0, 40),
    "meta-llama/Meta-Llama-3-8B": (8.0, 32), "facebook/layerskip-llama3-8B": (8.0, 32),
    "meta-llama/Llama-3.2-1B": (1.24, 16), "facebook/layerskip-llama3.2-1B": (1.24, 16),
    "topv2-baseline": (1.5, 24), "topv2-layerskip": (1.5, 24),
    "scratch-1.5b-baseline": (1.5, 24), "scratch-1.5b-layerskip": (1.5, 24),
    "scratch-7b-baseline": (6.7, 32), "scratch-7b-layerskip": (6.7, 32),
    "code-7b-baseline": (6.7, 32), "code-7b-layerskip": (6.7, 32),
}
"""Billions of parameters and layers, for estimates only."""

TOKENS_PER_EXAMPLE = {"cnn_dm": 100, "xsum": 60, "humaneval": 150, "topv2": 30}
"""Typical generated tokens per example with our stop rules (the cap is each task's max_new_tokens)."""
FULL_SIZES = {"cnn_dm": 11490, "xsum": 11334, "humaneval": 164, "topv2": 38785}
"""Examples in the full test splits, for estimates when the data is not here to count."""
SELF_SPEC_FACTOR = 1.7
"""Typical self-speculative speedup (paper Table 3: 1.34-1.86x), for estimates only."""


@dataclass(frozen=True)
class LmEvalTask:
    dataset: str
    """HF data set lm-eval 0.4.13 reads (``dataset_path``)."""
    split: str
    docs: int
    forwards_per_doc: float
    """Loglikelihood requests per document (answer choices x questions)."""
    gen_tokens: int
    """Generated tokens per document (generate_until tasks)."""


LM_EVAL_TASKS: dict[str, LmEvalTask] = {
    "boolq": LmEvalTask("aps/super_glue", "validation", 3270, 2, 0),
    "piqa": LmEvalTask("baber/piqa", "validation", 1838, 2, 0),
    "social_iqa": LmEvalTask("lighteval/siqa", "validation", 1954, 3, 0),
    "hellaswag": LmEvalTask("Rowan/hellaswag", "validation", 10042, 4, 0),
    "winogrande": LmEvalTask("allenai/winogrande", "validation", 1267, 2, 0),
    "arc_easy": LmEvalTask("allenai/ai2_arc", "test", 2376, 4, 0),
    "arc_challenge": LmEvalTask("allenai/ai2_arc", "test", 1172, 4, 0),
    "openbookqa": LmEvalTask("allenai/openbookqa", "test", 500, 4, 0),
    "copa": LmEvalTask("aps/super_glue", "validation", 100, 2, 0),
    "race": LmEvalTask("EleutherAI/race", "test", 1045, 14, 0),
    "mmlu": LmEvalTask("cais/mmlu", "test", 14042, 4, 0),
    "nq_open": LmEvalTask("google-research-datasets/nq_open", "validation", 3610, 0, 12),
    "triviaqa": LmEvalTask("mandarjoshi/trivia_qa", "validation", 17944, 0, 12),
    "gsm8k": LmEvalTask("openai/gsm8k", "test", 1319, 0, 160),
}
"""The lm-eval 0.4.13 tasks of Tables 1-2 (dataset_path and evaluation split as in its task YAMLs)."""


# ----------------------------------------------------------------------------- checkpoints


def user_checkpoint(alias: str, artifacts_dir: Path) -> Path | None:
    """The directory a user supplied for a never-released model: ``$<ENV>``, else ``<artifacts>/<alias>``."""
    spec = USER_CHECKPOINTS[alias]
    for cand in (os.environ.get(spec.env), artifacts_dir / alias):
        if cand and (Path(cand) / "config.json").is_file():
            return Path(cand)
    return None


def user_aliases(artifacts_dir: Path) -> dict[str, Path]:
    """Every never-released model the user supplied, alias -> directory."""
    found = {a: user_checkpoint(a, artifacts_dir) for a in USER_CHECKPOINTS}
    return {a: p for a, p in found.items() if p is not None}


def locate_model(model: str, ctx: PrepareContext) -> Missing | None:
    """None when ``model`` will be there when its run starts, else what is missing and how to get it."""
    if model in TRAINED_HERE and ctx.profile != "paper":
        return None
    if model in USER_CHECKPOINTS:
        if user_checkpoint(model, ctx.artifacts_dir) is not None:
            return None
        spec = USER_CHECKPOINTS[model]
        return Missing(f"checkpoint {model}", f"{spec.what}: {spec.how}; then set {spec.env}=DIR (a directory with "
                                              f"config.json, tokenizer and safetensors)")
    from .checkpoint import resolve_checkpoint

    try:
        resolve_checkpoint(model)
        return None
    except FileNotFoundError:
        return Missing(f"checkpoint {model}", f"`huggingface-cli download {model}` on a machine with internet (gated: "
                                              f"accept its licence on huggingface.co first), then make that HF cache "
                                              f"this machine's HF_HUB_CACHE")


def resolve_model(model: str, artifacts_dir: Path) -> Path:
    """The checkpoint directory of a released repo id or a user alias (offline)."""
    from .checkpoint import resolve_checkpoint

    if model in USER_CHECKPOINTS:
        path = user_checkpoint(model, artifacts_dir)
        if path is None:
            raise FileNotFoundError(f"checkpoint {model}: set {USER_CHECKPOINTS[model].env}")
        return path
    return resolve_checkpoint(model)


def checkpoint_fingerprint(path: Path) -> str:
    """Cheap identity of a checkpoint directory: file names and sizes (an HF snapshot name is its revision)."""
    files = sorted(p for p in Path(path).iterdir() if p.is_file())
    return hashlib.sha256(json.dumps([[Path(path).name]] + [[p.name, p.stat().st_size] for p in files]).encode()
                          ).hexdigest()[:16]


# ----------------------------------------------------------------------------- lm-eval


@dataclass(frozen=True)
class LmEvalCall:
    """One row's declared lm-eval call (``produce: {kind: lm-eval, ...}`` in a table spec)."""

    artifact: str
    model: str
    model_args: Mapping[str, Any]
    tasks: tuple[str, ...]
    num_fewshot: int | None
    limit: float | None
    include_path: str | None
    tables: tuple[str, ...]

    def model_args_string(self, checkpoint: Path | None = None) -> str:
        args = {**self.model_args, "model": str(checkpoint) if checkpoint else self.model}
        return ",".join(f"{k}={v}" for k, v in sorted(args.items()))

    def task_key(self, task: str, fingerprint: str) -> str:
        """Everything that changes a task's scores: a stored score with another key is recomputed."""
        from importlib import metadata

        blob = json.dumps({"model_args": self.model_args_string(), "task": task, "num_fewshot": self.num_fewshot,
                           "limit": self.limit, "checkpoint": fingerprint,
                           "lm_eval": metadata.version("lm_eval")}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lm_eval_calls(specs: Iterable[TableSpec]) -> list[LmEvalCall]:
    """The lm-eval calls declared by the tables' rows, one per artifact."""
    calls: dict[str, LmEvalCall] = {}
    for spec in specs:
        for name, produce in spec.artifacts().items():
            if produce.get("kind") != "lm-eval":
                continue
            args = dict(produce.get("model_args") or {})
            if "model" not in args or not produce.get("tasks"):
                raise ValueError(f"{spec.path}: the lm-eval produce of artifact {name} needs model_args.model and "
                                 f"tasks")
            old = calls.get(name)
            tables = (old.tables if old else ()) + (spec.id,)
            calls[name] = LmEvalCall(name, str(args.pop("model")), args, tuple(produce["tasks"]),
                                     produce.get("num_fewshot"), produce.get("limit"), produce.get("include_path"),
                                     tuple(dict.fromkeys(tables)))
    return list(calls.values())


def lm_eval_dataset_missing(task: str) -> Missing | None:
    """Is the HF data set of a known lm-eval task in a local HF cache? (Unknown tasks are not checked.)"""
    from suite.data import hf_cache_dirs

    info = LM_EVAL_TASKS.get(task)
    if info is None:
        return None
    hub = [d / f"datasets--{info.dataset.replace('/', '--')}" / "snapshots" for d in hf_cache_dirs("hub")]
    legacy = [d / info.dataset.replace("/", "___") for d in hf_cache_dirs("datasets")]
    if any(p.is_dir() and any(p.iterdir()) for p in hub + legacy):
        return None
    users = ", ".join(repr(t) for t, i in LM_EVAL_TASKS.items() if i.dataset == info.dataset)
    return Missing(f"data set {info.dataset} (lm-eval)",
                   f"on a machine with internet run `python -c \"import lm_eval.tasks as t; "
                   f"t.TaskManager().load_task_or_group([{users}])\"` (fills the HF cache), then use that cache here "
                   f"(HF_HOME / HF_DATASETS_CACHE) with HF_DATASETS_OFFLINE=1")


def lm_eval_steps(specs: Sequence[TableSpec], ctx: PrepareContext) -> list[PlannedStep]:
    steps = []
    for call in lm_eval_calls(specs):
        model_missing = locate_model(call.model, ctx)
        for task in call.tasks:
            info = LM_EVAL_TASKS.get(task)
            samples = int(call.limit) if call.limit is not None and call.limit >= 1 else (info.docs if info else None)
            missing = tuple(m for m in (model_missing, lm_eval_dataset_missing(task)) if m)
            steps.append(PlannedStep(
                what=f"lm-eval {task} -> artifact {call.artifact}", kind="prepare", checkpoint=call.model,
                dataset=f"{info.dataset}/{info.split}" if info else task, samples=samples, device=ctx.device,
                gpu_hours=_lm_eval_hours(call, task, samples), missing=missing, tables=call.tables))
    return steps


def _lm_eval_hours(call: LmEvalCall, task: str, samples: int | None) -> float | None:
    info = LM_EVAL_TASKS.get(task)
    ms = ms_per_token(call.model, "autoregressive", None)
    if info is None or ms is None or not samples:
        return None
    # a loglikelihood forward over a few hundred tokens costs about two decoding steps at batch size 1
    per_doc_ms = info.forwards_per_doc * 2 * ms + info.gen_tokens * ms
    return samples * per_doc_ms / 3.6e6


# ----------------------------------------------------------------------------- estimates


def ms_per_token(model: str, strategy: str, exit_layer: int | None,
                 measured_7b: Mapping[str, float] | None = None) -> float | None:
    """Rough H100 time per token at batch size 1 (or a measured 7B time, scaled by model size)."""
    shape = MODEL_SHAPES.get(model)
    if shape is None:
        return None
    size, layers = shape

    def base(b: float) -> float:
        return 4.3 + 1.75 * b  # through Table 3's 16 ms (7B) and 27 ms (13B)

    if measured_7b and strategy in measured_7b:
        return measured_7b[strategy] * base(size) / base(6.7)
    ms = base(size)
    if strategy == "early_exit" and exit_layer:
        return ms * min(1.0, exit_layer / layers + 0.05)
    if strategy == "self_speculative":
        return ms / SELF_SPEC_FACTOR
    return ms


_STRATEGY = {"layerskip-ar": "autoregressive", "layerskip-early-exit": "early_exit",
             "layerskip-self-spec": "self_speculative"}


def estimate_run(run: Any, samples: int | None, measured_7b: Mapping[str, float] | None = None) -> float | None:
    """GPU-hours of one run spec; None for CPU runs and unknown models."""
    params = run.params_dict
    if str(params.get("device", "")).startswith("cpu") or run.system not in _STRATEGY:
        return None
    ms = ms_per_token(str(params.get("model")), _STRATEGY[run.system], params.get("exit_layer"), measured_7b)
    if ms is None:
        return None
    n = samples if samples is not None else FULL_SIZES.get(run.task, 0)
    cap = int(run.task_args_dict.get("max_new_tokens", 512))
    tokens = min(TOKENS_PER_EXAMPLE.get(run.task, 128), cap)
    return n * (tokens + 2) * ms / 3.6e6  # + about two steps' worth of prefill per example


# ----------------------------------------------------------------------------- the plan


def _prepare_steps_trained_here(ctx: PrepareContext) -> list[PlannedStep]:
    from suite.data import DataMissing
    from suite.tasks.topv2 import data_file

    missing = []
    for split in ("train", "test"):
        try:
            data_file("weather", split).resolve(ctx.data_root, download=False)
        except DataMissing as e:
            missing.append(Missing("data set topv2", str(e)))
    miss = tuple(missing[:1])
    steps = [PlannedStep(what=f"train {name} ({variant}, TOPv2 weather)", kind="prepare", checkpoint=name,
                         dataset="topv2/weather train", device=ctx.device, missing=miss)
             for name, variant in (("baseline", "baseline"), ("layerskip", "ld+ee"))]
    steps.append(PlannedStep(what="per-layer early-exit curves -> artifact layer_curves", kind="prepare",
                             dataset="topv2/weather test", device=ctx.device, missing=miss))
    return steps


def plan(profile: str, ctx: PrepareContext, specs: Sequence[TableSpec]) -> list[PlannedStep]:
    """Prepare steps (training at smoke/mini, lm-eval calls at paper), then one step per run of ``specs``."""
    steps = _prepare_steps_trained_here(ctx) if profile != "paper" else lm_eval_steps(specs, ctx)
    runs = run_steps(specs, ctx, locate_model=lambda m: locate_model(m, ctx),
                     estimate=lambda run, n: estimate_run(run, n))
    if profile != "paper" and steps[0].missing:  # nothing runs without the trained models
        runs = [s if s.missing or s.checkpoint not in TRAINED_HERE else replace(s, missing=steps[0].missing)
                for s in runs]
    return steps + runs


def table_estimates(specs: Sequence[TableSpec], ctx: PrepareContext,
                    measured_7b: Mapping[str, float]) -> dict[str, float]:
    """Estimated GPU-hours per table, from a measured 7B time per token per strategy."""
    out: dict[str, float] = {}
    for step in run_steps(specs, ctx, estimate=lambda run, n: estimate_run(run, n, measured_7b)):
        for t in step.tables:
            out[t] = out.get(t, 0.0) + (step.gpu_hours or 0.0) / len(step.tables)
    for step in lm_eval_steps(specs, ctx):
        scale = measured_7b.get("autoregressive", 0) / ms_per_token("meta-llama/Llama-2-7b-hf", "autoregressive", None)
        for t in step.tables:
            out[t] = out.get(t, 0.0) + (step.gpu_hours or 0.0) * scale / len(step.tables)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reproductions.layerskip.plan --ms ar=X ee=Y ss=Z``: per-table GPU-hours at the paper profile
    implied by a measured 7B time per token (what ``benchmarks/layerskip_gpu_check.sh`` prints)."""
    import argparse

    from suite.data import data_root

    from .paper import PAPER

    ap = argparse.ArgumentParser(prog="python -m reproductions.layerskip.plan")
    ap.add_argument("--ms", nargs="+", required=True, metavar="STRATEGY=MS",
                    help="measured ms/token of a 7B-shaped model: ar=.. ee=.. ss=..")
    a = ap.parse_args(argv)
    names = {"ar": "autoregressive", "ee": "early_exit", "ss": "self_speculative"}
    measured = {names[k]: float(v) for k, v in (x.split("=", 1) for x in a.ms)}
    ctx = PrepareContext("paper", data_root(None), Path("runs") / "paper" / "artifacts", device="cuda")
    est = table_estimates(PAPER.tables("paper"), ctx, measured)
    print("estimated GPU-hours per table at the paper profile (from the measured 7B ms/token, scaled by size):")
    for table, hours in sorted(est.items()):
        print(f"  {table:<32s} {hours:8.2f}")
    print(f"  {'total':<32s} {sum(est.values()):8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
