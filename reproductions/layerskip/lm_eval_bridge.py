"""lm-evaluation-harness (0.4.13) model ``repro-layerskip``: our LayerSkip Llama behind lm-eval's LM API.

This is how the suite runs the lm-eval columns of LayerSkip Tables 1-2 (BoolQ, PIQA, ..., MMLU, GSM8K)
with the *paper* profile on released checkpoints:

    python -m reproductions.layerskip.lm_eval_bridge --model repro-layerskip \\
        --model_args model=facebook/layerskip-llama2-7B,exit_layer=16,dtype=float16 --tasks boolq

(``python -m reproductions.layerskip.lm_eval_bridge`` registers the model, then runs lm-eval's own command line with the
same arguments: lm-eval 0.4.13 has no plugin hook through which a bare ``lm_eval --model repro-layerskip``
could find a model defined outside its package. From Python, ``import reproductions.layerskip.lm_eval_bridge`` and call
``register()`` before ``lm_eval.simple_evaluate(model="repro-layerskip", ...)``.)

To make the scores table cells, ``python -m reproductions.layerskip.lm_eval_bridge record NAME --model_args ... --tasks ...``
stores them as the suite artifact ``<runs>/paper/artifacts/NAME/metrics.json`` (metric names
``<task>/<metric>[@<filter>]``, e.g. ``boolq/acc``), which rows of ``table1_continual_pretraining.yaml`` read.
``repro reproduce layerskip --profile paper`` does this itself: each table row declares its lm-eval call
(``produce: {kind: lm-eval, model_args, tasks, num_fewshot, limit}``) and the paper's prepare step calls
:func:`record` once per lm-eval task that has no current result (``task_keys`` in the artifact say which
settings produced each task's scores), so an interrupted preparation resumes task by task.

Model arguments:

* ``model``: local checkpoint directory or an HF repo id already in the local hub cache (offline).
* ``exit_layer``: E, the number of layers run before the shared final norm + LM head. Default: all L
  layers. The papers' "Middle layer" columns (L16 of 32, L20 of 40, L8 of 16) are ``exit_layer=L/2``.
* ``strategy``: ``auto`` (default) | ``autoregressive`` | ``early_exit`` | ``self_speculative``. ``auto`` is
  ``self_speculative`` when ``num_speculations`` is given, else ``early_exit`` when E < L, else
  ``autoregressive``.
* ``num_speculations``: d for self-speculative generation.
* ``dtype`` (``float32`` | ``bfloat16`` | ``float16``), ``device``, ``batch_size`` (loglikelihood only; generation
  is batch 1, as in the paper), ``max_length`` (context; default the checkpoint's max positions),
  ``max_gen_toks`` (default 256), ``warmup`` (default true).

What each request type runs:

* ``loglikelihood`` / ``loglikelihood_rolling``: one causal forward pass through layers ``< E`` and the shared
  head (early exit). For ``self_speculative`` the scores are those of the full model (all L layers), because
  self-speculative decoding is lossless: it produces what the last layer would.
* ``generate_until``: ``reproductions.layerskip.decoding.generate`` with the chosen strategy, greedy unless
  the task asks for sampling; stops at the task's ``until`` strings and EOS.

Decoding statistics (ms/token, acceptance rate, generated tokens) are averaged over all generation requests and
reported by ``get_model_info()``, which lm-eval copies into ``results["config"]``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

MODEL_NAME = "repro-layerskip"
STRATEGIES = ("auto", "autoregressive", "early_exit", "self_speculative")
_LM_CLASS: type | None = None
log = logging.getLogger(__name__)


def _as_bool(v: Any) -> bool:
    if isinstance(v, str):
        return v.strip().lower() in ("1", "true", "yes", "on")
    return bool(v)


def _opt_int(v: Any) -> int | None:
    if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none", "null")):
        return None
    return int(v)


def exit_logits(model, input_ids, exit_layer: int):
    """Logits [B, T, V] from layers ``< exit_layer`` then the shared final norm + LM head (plain causal pass)."""
    h = model.embed(input_ids)
    cos, sin = model.rope(0, input_ids.shape[1], h.dtype, h.device)
    for layer in model.layers[:exit_layer]:
        h = layer(h, cos, sin)
    return model.head(h)


class LayerSkipEvalCore:
    """The model-side logic, free of lm-eval imports (the registered class adds lm-eval's base class)."""

    def __init__(self, model: str, exit_layer: Any = None, strategy: str = "auto", num_speculations: Any = None,
                 dtype: str = "float32", device: str | None = None, batch_size: Any = 1, max_length: Any = None,
                 max_gen_toks: Any = 256, warmup: Any = True, reuse_cache: Any = True, seed: Any = 0,
                 **unused: Any):
        import torch
        from transformers import AutoTokenizer

        from reproductions.layerskip.checkpoint import load_llama, parse_dtype, resolve_checkpoint

        ignored = {k: v for k, v in unused.items() if k not in ("max_batch_size",) and v is not None}
        if ignored:
            log.warning("%s: ignoring unknown model arguments %s", MODEL_NAME, sorted(ignored))
        self.checkpoint = resolve_checkpoint(str(model))
        self.model_arg = str(model)
        self._device_name = str(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self._device_name.startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's command line passes device=cuda by default
            log.warning("%s: device %s is not available; using cpu", MODEL_NAME, self._device_name)
            self._device_name = "cpu"
        self.dtype = parse_dtype(dtype)
        self.model = load_llama(self.checkpoint, dtype=self.dtype, device=self._device_name)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.checkpoint))
        self.n_layers = self.model.config.n_layers
        L = self.n_layers
        E = _opt_int(exit_layer)
        self.exit_layer = L if E is None else E
        if not 1 <= self.exit_layer <= L:
            raise ValueError(f"{MODEL_NAME}: exit_layer must be in 1..{L}, got {self.exit_layer}")
        if strategy not in STRATEGIES:
            raise ValueError(f"{MODEL_NAME}: strategy must be one of {STRATEGIES}, got {strategy!r}")
        d = _opt_int(num_speculations)
        if strategy == "auto":
            strategy = "self_speculative" if d is not None else ("early_exit" if self.exit_layer < L else "autoregressive")
        if strategy == "self_speculative":
            if d is None or d < 1 or self.exit_layer >= L:
                raise ValueError(f"{MODEL_NAME}: self_speculative needs num_speculations >= 1 and exit_layer < {L}")
        if strategy == "autoregressive" and self.exit_layer != L:
            raise ValueError(f"{MODEL_NAME}: autoregressive runs all {L} layers; use early_exit for exit_layer={E}")
        self.strategy = strategy
        self.num_speculations = d if d is not None else 1
        self.score_layer = L if strategy == "self_speculative" else self.exit_layer
        bs = str(batch_size).split(":")[0]
        self._batch_size = 1 if bs in ("auto", "None", "") else max(1, int(bs))
        self._max_length = _opt_int(max_length) or int(self.model.config.max_seq_len)
        self._max_gen_toks = int(max_gen_toks)
        self.reuse_cache = _as_bool(reuse_cache)
        self.seed = int(seed)
        self.eos_ids = self._eos_ids()
        self.generation_stats: list[dict[str, float]] = []
        if _as_bool(warmup):
            self._generate_ids(self._encode_with_bos("hello"), 4, None)

    # -- tokenization ---------------------------------------------------------------------------------------------
    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for v in (self.model.config.eos_token_id, self.tokenizer.eos_token_id):
            ids.update([v] if isinstance(v, int) else (v or []))
        return sorted(ids)

    @property
    def eot_token_id(self) -> int:
        if self.tokenizer.eos_token_id is not None:
            return int(self.tokenizer.eos_token_id)
        return self.eos_ids[0] if self.eos_ids else 0

    @property
    def prefix_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        return int(bos) if bos is not None else self.eot_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @property
    def device(self) -> str:
        return self._device_name

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "")).replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Tokenizer default special tokens (BOS for Llama), unless the string already starts with BOS."""
        if add_special_tokens is None:
            bos = self.tokenizer.bos_token
            add_special_tokens = not (bos and string.startswith(bos))
        return list(self.tokenizer(string, add_special_tokens=add_special_tokens)["input_ids"])

    def tok_decode(self, tokens: Sequence[int]) -> str:
        return self.tokenizer.decode(list(tokens), skip_special_tokens=True)

    def _encode_with_bos(self, text: str) -> list[int]:
        ids = self.tok_encode(text)
        bos = self.tokenizer.bos_token_id
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        return ids or [self.prefix_token_id]

    # -- scoring --------------------------------------------------------------------------------------------------
    def _score_batch(self, items: list[tuple[list[int], int]]) -> list[tuple[float, bool]]:
        """items: (input tokens incl. the continuation's, number of continuation tokens at the end)."""
        import torch

        width = max(len(toks) for toks, _ in items)
        pad = self.prefix_token_id
        batch = torch.full((len(items), width), pad, dtype=torch.long, device=self.device)
        for i, (toks, _) in enumerate(items):
            batch[i, : len(toks)] = torch.tensor(toks, dtype=torch.long)
        with torch.inference_mode():
            # right padding is exact for a causal model: padded positions come after every scored one
            logp = exit_logits(self.model, batch[:, :-1] if width > 1 else batch, self.score_layer).float().log_softmax(-1)
        out = []
        for i, (toks, n_cont) in enumerate(items):
            T = len(toks)
            pred = logp[i, T - 1 - n_cont: T - 1]  # position t predicts token t + 1
            target = torch.tensor(toks[T - n_cont:], dtype=torch.long, device=self.device)
            ll = float(pred.gather(-1, target[:, None]).sum())
            greedy = bool((pred.argmax(-1) == target).all())
            out.append((ll, greedy))
        return out

    def _loglikelihood_tokens(self, requests: list[tuple[Any, list[int], list[int]]], disable_tqdm: bool = False,
                              **kwargs: Any) -> list[tuple[float, bool]]:
        items = []
        for _, ctx, cont in requests:
            if not cont:
                raise ValueError(f"{MODEL_NAME}: empty continuation")
            toks = (list(ctx) + list(cont))[-(self.max_length + 1):]
            items.append((toks, min(len(cont), len(toks) - 1)))
        order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
        results: list[tuple[float, bool] | None] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start: start + self.batch_size]
            for i, r in zip(chunk, self._score_batch([items[i] for i in chunk])):
                results[i] = r
            self._cache_partial("loglikelihood", [requests[i][0] for i in chunk], [results[i] for i in chunk])
        return results  # type: ignore[return-value]

    def _rolling_windows(self, tokens: list[int]) -> Iterable[tuple[list[int], list[int]]]:
        """Disjoint windows (context, continuation) that score every token once, with up to max_length context."""
        L = self.max_length
        pos = 0
        prefix = [self.prefix_token_id]
        while pos < len(tokens):
            n = min(L, len(tokens) - pos)
            window = (prefix + tokens)[max(0, pos + n + 1 - (L + 1)): pos + n + 1]
            ctx, cont = window[: len(window) - n], window[len(window) - n:]
            yield ctx, cont
            pos += n

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        out = []
        for req in requests:
            (string,) = req.args
            toks = self.tok_encode(string, add_special_tokens=False)
            windows = list(self._rolling_windows(toks))
            total = sum(ll for ll, _ in self._loglikelihood_tokens([(None, c, x) for c, x in windows]))
            out.append(total)
            self._cache_partial("loglikelihood_rolling", [(string,)], [total])
        return out

    # -- generation -----------------------------------------------------------------------------------------------
    def _generate_ids(self, ids: list[int], max_new: int, stop_fn, sampling=None, generator=None):
        from reproductions.layerskip.decoding import generate

        return generate(self.model, ids, max_new, strategy=self.strategy,
                        exit_layer=None if self.strategy == "autoregressive" else self.exit_layer,
                        num_speculations=self.num_speculations, reuse_cache=self.reuse_cache,
                        eos_token_ids=self.eos_ids, stop_fn=stop_fn, sampling=sampling, generator=generator)

    def _sampling(self, kw: dict[str, Any]):
        from reproductions.layerskip.decoding import Sampling

        temperature = float(kw.get("temperature", 0.0) or 0.0)
        if not _as_bool(kw.get("do_sample", False)) or temperature <= 0.0:
            return Sampling(sample=False), None
        import torch

        gen = torch.Generator(device=self.device).manual_seed(self.seed + len(self.generation_stats))
        return Sampling(sample=True, temperature=temperature, top_k=int(kw.get("top_k", 0) or 0),
                        top_p=float(kw.get("top_p", 1.0) or 1.0)), gen

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        out = []
        for req in requests:
            context, gen_kwargs = req.args
            kw = dict(gen_kwargs or {})
            until = kw.pop("until", None)
            until = [until] if isinstance(until, str) else list(until or [])
            eos_text = self.tokenizer.eos_token
            stops = tuple(s for s in until if s)
            max_new = None
            for key in ("max_gen_toks", "max_new_tokens", "max_tokens"):
                if kw.get(key) is not None:
                    max_new = int(kw[key])
                    break
            max_new = self.max_gen_toks if max_new is None else max_new
            ids = self._encode_with_bos(context)
            keep = max(1, self.max_length - max_new)
            ids = ids[-keep:]
            stop_fn = (lambda toks: any(s in self.tok_decode(toks) for s in stops)) if stops else None  # noqa: B023 (used in this iteration)
            sampling, gen = self._sampling(kw)
            toks, st = self._generate_ids(ids, max_new, stop_fn, sampling, gen)
            text = self.tok_decode(toks)
            cuts = [i for i in (text.find(s) for s in stops + ((eos_text,) if eos_text else ())) if i >= 0]
            text = text[: min(cuts)] if cuts else text
            self.generation_stats.append(st.as_dict())
            out.append(text)
            self._cache_partial("generate_until", [(context, gen_kwargs)], [text])
        return out

    def _cache_partial(self, kind: str, args: list, results: list) -> None:
        hook = getattr(self, "cache_hook", None)
        if hook is not None:
            for a, r in zip(args, results):
                if a is not None:
                    hook.add_partial(kind, a, r)

    # -- reporting ------------------------------------------------------------------------------------------------
    def stats_summary(self) -> dict[str, float]:
        """Means over generation requests of the decoding statistics (empty before any generation)."""
        if not self.generation_stats:
            return {}
        keys = sorted({k for s in self.generation_stats for k in s})
        return {k: sum(s.get(k, 0.0) for s in self.generation_stats) / len(self.generation_stats) for k in keys}

    def get_model_info(self) -> dict[str, Any]:
        from reproductions.layerskip.checkpoint import checkpoint_files

        files = checkpoint_files(self.checkpoint)
        info = {"layerskip_checkpoint": str(self.checkpoint), "layerskip_strategy": self.strategy,
                "layerskip_exit_layer": self.exit_layer, "layerskip_score_layer": self.score_layer,
                "layerskip_n_layers": self.n_layers, "layerskip_num_speculations": self.num_speculations,
                "layerskip_dtype": str(self.dtype).removeprefix("torch."),
                "layerskip_checkpoint_files": [f.name for f in files]}
        info.update({f"layerskip_gen_{k}_mean": v for k, v in self.stats_summary().items()})
        return info


def register() -> type:
    """Define the lm-eval model class (importing lm-eval now, not at module import) and register it once."""
    global _LM_CLASS
    if _LM_CLASS is not None:
        return _LM_CLASS
    import lm_eval.models  # noqa: F401  (fill the registry first: lm-eval imports it only while it is empty)
    from lm_eval.api.model import TemplateLM
    from lm_eval.api.registry import register_model

    @register_model(MODEL_NAME)
    class LayerSkipLM(LayerSkipEvalCore, TemplateLM):
        """Our LayerSkip Llama as an lm-eval model (see ``reproductions.layerskip.lm_eval_bridge``)."""

        def __init__(self, **kwargs: Any):
            TemplateLM.__init__(self)
            LayerSkipEvalCore.__init__(self, **kwargs)

        # TemplateLM declares these abstract; the core implements them.
        eot_token_id = LayerSkipEvalCore.eot_token_id
        prefix_token_id = LayerSkipEvalCore.prefix_token_id
        device = LayerSkipEvalCore.device
        tokenizer_name = LayerSkipEvalCore.tokenizer_name
        tok_encode = LayerSkipEvalCore.tok_encode
        _loglikelihood_tokens = LayerSkipEvalCore._loglikelihood_tokens
        loglikelihood_rolling = LayerSkipEvalCore.loglikelihood_rolling
        generate_until = LayerSkipEvalCore.generate_until

    _LM_CLASS = LayerSkipLM
    return LayerSkipLM


def __getattr__(name: str) -> Any:
    if name == "LayerSkipLM":
        return register()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def results_to_metrics(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """lm-eval results -> suite metric entries ``{"<task>/<metric>[@<filter>]": {"value", "ci95", "n", "kind"}}``.

    ``boolq`` ``acc,none`` becomes ``boolq/acc``; ``gsm8k`` ``exact_match,strict-match`` becomes
    ``gsm8k/exact_match@strict-match``. The 95% interval is value ± 1.96 × lm-eval's standard error."""
    out: dict[str, dict[str, Any]] = {}
    n_samples = results.get("n-samples") or {}
    for task, res in (results.get("results") or {}).items():
        n = (n_samples.get(task) or {}).get("effective")
        for key, value in res.items():
            if ("," not in key or "_stderr" in key or isinstance(value, bool)
                    or not isinstance(value, (int, float))):  # metrics are "<metric>,<filter>"
                continue
            metric, _, filt = key.partition(",")
            name = f"{task}/{metric}" + ("" if filt in ("", "none") else f"@{filt}")
            entry: dict[str, Any] = {"value": float(value), "kind": "score", "ci95": None}
            se = res.get(f"{metric}_stderr,{filt}" if filt else f"{metric}_stderr")
            if isinstance(se, (int, float)) and not isinstance(se, bool) and se == se:
                entry["ci95"] = [float(value) - 1.96 * se, float(value) + 1.96 * se]
            if n is not None:
                entry["n"] = int(n)
            out[name] = entry
    return out


def _artifact_path(name: str, runs_root: Path, profile: str) -> Path:
    return Path(runs_root) / profile / "artifacts" / name / "metrics.json"


def _existing_artifact(path: Path, model_args: str, force: bool) -> dict[str, Any]:
    """The stored record to extend ({} if none or forced over); refuses to mix in another model's results."""
    import json

    old: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if old and old.get("model_args") != model_args:
        if not force:
            raise ValueError(f"{path} holds results for model_args={old.get('model_args')!r}, not {model_args!r}; "
                             f"use another name or --force")
        return {}
    return old


def task_keys(name: str, *, runs_root: Path, profile: str) -> dict[str, str]:
    """lm-eval task -> the key of the settings that produced its stored scores ({} when nothing is stored)."""
    from suite.records import read_json

    path = _artifact_path(name, runs_root, profile)
    return dict(read_json(path).get("task_keys", {})) if path.exists() else {}


def pending_tasks(name: str, keys: dict[str, str], *, runs_root: Path, profile: str) -> list[str]:
    """The tasks of ``keys`` (task -> current settings key) whose stored scores are missing or stale."""
    done = task_keys(name, runs_root=runs_root, profile=profile)
    return [t for t, k in keys.items() if done.get(t) != k]


def write_artifact(name: str, results: dict[str, Any], *, runs_root: Path, profile: str, model_args: str,
                   force: bool = False, key: str | None = None) -> Path:
    """Store lm-eval results as the suite artifact ``<runs>/<profile>/artifacts/<name>/metrics.json``, which table
    rows read with ``artifact: <name>``. Several invocations (task lists) for the same model accumulate; a record
    made with other model arguments is refused unless ``force``. With a ``key`` (what the suite's prepare step
    passes) a record made with other model arguments is replaced instead, and every task of ``results`` is
    marked with the key so :func:`pending_tasks` knows it is current."""
    import time

    from suite.provenance import provenance
    from suite.records import write_json_atomic

    path = _artifact_path(name, runs_root, profile)
    old = _existing_artifact(path, model_args, force or key is not None)
    metrics = {**old.get("metrics", {}), **results_to_metrics(results)}
    keys = dict(old.get("task_keys", {}))
    if key is not None:
        keys.update({t: key for t in (results.get("results") or {})})
    config = {k: v for k, v in (results.get("config") or {}).items() if isinstance(v, (str, int, float, bool, list))}
    runs = list(old.get("lm_eval_runs", [])) + [{
        "tasks": sorted((results.get("results") or {}).keys()), "config": config,
        "versions": results.get("versions"), "n_shot": results.get("n-shot"),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]
    record = {"kind": "lm-eval", "model": MODEL_NAME, "model_args": model_args, "metrics": metrics,
              "task_keys": keys,
              "n_examples": max((m.get("n", 0) for m in metrics.values()), default=0), "lm_eval_runs": runs,
              "provenance": provenance({"lm_eval": int(config.get("random_seed", 0) or 0)}),
              "finished_at": runs[-1]["finished_at"]}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, record)
    return path


def record(name: str, *, model_args: str, tasks: Sequence[str], runs_root: Path, profile: str = "paper",
           num_fewshot: int | None = None, limit: float | None = None, batch_size: int = 1,
           force: bool = False, include_path: str | None = None, key: str | None = None,
           device: str | None = None) -> Path:
    """Run lm-eval on ``repro-layerskip`` and store the scores as a suite artifact (see ``write_artifact``)."""
    if key is None:  # refuse before running; with a key a stale record is replaced
        _existing_artifact(_artifact_path(name, runs_root, profile), model_args, force)
    register()
    import lm_eval
    from lm_eval.tasks import TaskManager

    results = lm_eval.simple_evaluate(model=MODEL_NAME, model_args=model_args, tasks=list(tasks),
                                      num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, device=device,
                                      task_manager=TaskManager(include_path=include_path))
    if results is None:
        raise RuntimeError("lm-eval returned no results (non-zero rank?)")
    return write_artifact(name, results, runs_root=runs_root, profile=profile, model_args=model_args, force=force,
                          key=key)


def main(argv: list[str] | None = None) -> None:
    """``python -m reproductions.layerskip.lm_eval_bridge <lm-eval run arguments>``: lm-eval's CLI with ``repro-layerskip`` known.

    ``python -m reproductions.layerskip.lm_eval_bridge record NAME --model_args ... --tasks a,b [--num_fewshot K] [--limit N]
    [--runs-dir DIR] [--profile paper]`` runs lm-eval and stores the scores as the suite artifact NAME."""
    root = Path(__file__).resolve().parents[1]
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "record":
        import argparse
        import os

        ap = argparse.ArgumentParser(prog="python -m reproductions.layerskip.lm_eval_bridge record",
                                     description="run lm-eval on repro-layerskip and store a suite artifact")
        ap.add_argument("name", help="artifact name, e.g. lmeval-llama2-7b-layerskip-l16")
        ap.add_argument("--model_args", required=True)
        ap.add_argument("--tasks", required=True, help="comma-separated lm-eval task names")
        ap.add_argument("--num_fewshot", type=int, default=None)
        ap.add_argument("--limit", type=float, default=None)
        ap.add_argument("--batch_size", type=int, default=1)
        ap.add_argument("--runs-dir", default=os.environ.get("REPRO_RUNS_DIR") or "runs")
        ap.add_argument("--profile", default="paper")
        ap.add_argument("--include_path", default=None, help="extra lm-eval task directory")
        ap.add_argument("--force", action="store_true")
        a = ap.parse_args(args[1:])
        path = record(a.name, model_args=a.model_args, tasks=[t for t in a.tasks.split(",") if t],
                      runs_root=Path(a.runs_dir), profile=a.profile, num_fewshot=a.num_fewshot, limit=a.limit,
                      batch_size=a.batch_size, force=a.force, include_path=a.include_path)
        print(path)
        return
    register()
    from lm_eval.__main__ import cli_evaluate

    sys.argv = [sys.argv[0]] + args
    cli_evaluate()


if __name__ == "__main__":
    main()
