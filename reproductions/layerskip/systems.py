"""Suite systems (``suite.interfaces.System``) for LayerSkip decoding on our Llama.

params: ``model`` (alias in ``ctx.artifacts``, else local dir or HF repo id), ``exit_layer``,
``num_speculations``, ``dtype`` ("float32" | "bfloat16" | "float16"; default ``ctx.dtype``),
``reuse_cache`` (True), ``sample`` (False), ``temperature`` (0.6), ``top_p`` (0.9), ``top_k`` (0),
``seed`` (ctx.seed), ``warmup`` (True), ``compile`` (False: torch.compile'd static-shape decode steps),
``draft_confidence`` (0.0: always ``num_speculations`` drafts, as the paper; > 0 ends a draft run after a
token the exit gives less probability: same outputs, different cost),
``batch_size`` (1; the runner's batch), ``device`` (default ``ctx.device``; LayerSkip Tables 7 and 11 were
measured on a CPU, so their specs pin ``cpu``).

``predict`` decodes a batch of requests together (left-padded, greedy) for autoregressive and early-exit
systems; self-speculative decoding and sampling stay one request at a time (acceptance is per row, and
sampling seeds are per example), which gives the same outputs as batch 1.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from suite.interfaces import Example, Generation, GenerationRequest, RunContext

from .checkpoint import checkpoint_files, load_llama, parse_dtype, resolve_checkpoint
from .decoding import DecodeStats, Sampling, generate, generate_batch

IMPL_VERSION = "layerskip-ours-5"
"""2: DecodeStats.layers_per_token; 3: sequential_layers_per_token; 4: kernels chosen per decode step (streamed or
cached weights: timings change); 5: CPU fp32 linears through oneDNN (``suite.cpu_linear``; timings and float
rounding change). Older runs are recomputed."""


def _as_bool(v: Any) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on") if isinstance(v, str) else bool(v)


def _sha256_files(files: list[Path], root: Path) -> str:
    """One digest of the checkpoint: each file's name and sha256, the latter cached by (path, size, mtime) so
    that recognising an unchanged 13 GB checkpoint costs a stat per file, not a read."""
    from suite.checksums import sha256_cached

    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0" + sha256_cached(f).encode() + b"\0")
    return h.hexdigest()


def _checkpoint_dir(params: Mapping[str, Any], ctx: RunContext) -> Path:
    name = str(params["model"])
    return resolve_checkpoint(ctx.artifacts.get(name, name) if ctx.artifacts else name)


def _dtype(params: Mapping[str, Any], ctx: RunContext) -> torch.dtype:
    return parse_dtype(params.get("dtype") or getattr(ctx, "dtype", None) or "float32")


class _LayerSkipSystem:
    strategy = "autoregressive"

    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        from transformers import AutoTokenizer

        self.params = dict(params)
        self.ckpt = _checkpoint_dir(params, ctx)
        self.device = str(params.get("device") or ctx.device or "cpu")  # a table measured on CPU pins "cpu"
        self.dtype = _dtype(params, ctx)
        self.model = load_llama(self.ckpt, dtype=self.dtype, device=self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.ckpt))
        L = self.model.config.n_layers
        e, d = params.get("exit_layer"), params.get("num_speculations")
        self.exit_layer = None if self.strategy == "autoregressive" else int(e if e is not None else L)
        self.num_speculations = int(d if d is not None else 1)
        self.reuse_cache = _as_bool(params.get("reuse_cache", True))
        self.sampling = Sampling(sample=_as_bool(params.get("sample", False)), temperature=float(params.get("temperature", 0.6)),
                                 top_k=int(params.get("top_k", 0)), top_p=float(params.get("top_p", 0.9)))
        self.seed = int(params.get("seed", ctx.seed))
        self.compile = _as_bool(params.get("compile", False))
        self.draft_confidence = float(params.get("draft_confidence", 0.0))
        self.eos = self._eos_ids()
        self._sha = _sha256_files(checkpoint_files(self.ckpt), self.ckpt)
        if _as_bool(params.get("warmup", True)):  # first-call allocations, kernel choice, compilation: not timed
            self._generate_ids(self._encode("hello"), 4, None, "warmup")
            batch = int(params.get("batch_size", 1))
            if batch > 1 and self.strategy != "self_speculative" and not self.sampling.sample:
                generate_batch(self.model, [self._encode("hello")] * batch, 4, exit_layer=self.exit_layer,
                               compile=self.compile)

    def _eos_ids(self) -> list[int]:
        ids: set[int] = set()
        for v in (self.model.config.eos_token_id, self.tokenizer.eos_token_id):
            ids.update([v] if isinstance(v, int) else (v or []))
        gc = self.ckpt / "generation_config.json"
        if gc.is_file():
            v = json.loads(gc.read_text()).get("eos_token_id")
            ids.update([v] if isinstance(v, int) else (v or []))
        return sorted(ids)

    def _encode(self, text: str) -> list[int]:
        tok = self.tokenizer
        ids = list(tok(text, add_special_tokens=True)["input_ids"])
        bos = tok.bos_token_id
        if bos is not None and getattr(tok, "add_bos_token", False) and (not ids or ids[0] != bos):
            ids = [bos] + ids
        if not ids:  # the model needs at least one input token
            ids = [bos if bos is not None else (self.eos[0] if self.eos else 0)]
        return ids

    def _generate_ids(self, ids: list[int], max_new: int, stop_fn, key: str):
        gen = None
        if self.sampling.sample:
            seed = int.from_bytes(hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[:8], "little")
            gen = torch.Generator(device=self.device).manual_seed(seed)
        return generate(self.model, ids, max_new, strategy=self.strategy, exit_layer=self.exit_layer,
                        num_speculations=self.num_speculations, reuse_cache=self.reuse_cache,
                        eos_token_ids=self.eos, stop_fn=stop_fn, sampling=self.sampling, generator=gen,
                        compile=self.compile, draft_confidence=self.draft_confidence)

    @classmethod
    def _identity(cls, sha: str, dtype: torch.dtype, device: str) -> dict[str, Any]:
        return {"checkpoint_sha256": sha, "impl": IMPL_VERSION, "strategy": cls.strategy,
                "dtype": str(dtype).removeprefix("torch."), "device": str(device)}

    def identity(self) -> Mapping[str, Any]:
        return self._identity(self._sha, self.dtype, self.device)

    @classmethod
    def cheap_identity(cls, params: Mapping[str, Any], ctx: RunContext) -> Mapping[str, Any]:
        """``identity()`` without loading the model, so the runner reuses a finished run without building us."""
        ckpt = _checkpoint_dir(params, ctx)
        return cls._identity(_sha256_files(checkpoint_files(ckpt), ckpt), _dtype(params, ctx), ctx.device or "cpu")

    def _decode(self, toks: list[int]) -> str:
        # generated tokens only, as the official code decodes them (SentencePiece drops a leading space)
        return self.tokenizer.decode(toks, skip_special_tokens=True)

    def _stop_fn(self, request: GenerationRequest):
        stops = tuple(x for x in request.stop if x)
        return (lambda toks: any(x in self._decode(toks) for x in stops)) if stops else None

    def _output(self, request: GenerationRequest, toks: list[int], st: DecodeStats) -> Generation:
        text = self._decode(toks)
        cut = min((i for i in (text.find(x) for x in request.stop if x) if i >= 0), default=len(text))
        return Generation(text=text[:cut], stats=st.as_dict())

    def generate(self, request: GenerationRequest, example) -> Generation:
        ids = self._encode(request.prompt)
        toks, st = self._generate_ids(ids, request.max_new_tokens, self._stop_fn(request), getattr(example, "id", ""))
        return self._output(request, toks, st)

    def predict(self, requests: Sequence[GenerationRequest], examples: Sequence[Example]) -> list[Generation]:
        if len(requests) < 2 or self.strategy == "self_speculative" or self.sampling.sample:
            return [self.generate(r, e) for r, e in zip(requests, examples)]
        toks, stats = generate_batch(self.model, [self._encode(r.prompt) for r in requests],
                                     [r.max_new_tokens for r in requests], exit_layer=self.exit_layer,
                                     eos_token_ids=self.eos, stop_fns=[self._stop_fn(r) for r in requests],
                                     compile=self.compile)
        return [self._output(r, t, st) for r, t, st in zip(requests, toks, stats)]


class LayerSkipAR(_LayerSkipSystem):
    strategy = "autoregressive"


class LayerSkipEarlyExit(_LayerSkipSystem):
    strategy = "early_exit"


class LayerSkipSelfSpec(_LayerSkipSystem):
    strategy = "self_speculative"
