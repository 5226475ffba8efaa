"""Suite systems (``suite.interfaces.System``) for LayerSkip decoding on our Llama.

params: ``model`` (alias in ``ctx.artifacts``, else local dir or HF repo id), ``exit_layer``,
``num_speculations``, ``dtype`` ("float32" | "bfloat16" | "float16"), ``reuse_cache`` (True),
``sample`` (False), ``temperature`` (0.6), ``top_p`` (0.9), ``top_k`` (0), ``seed`` (ctx.seed),
``warmup`` (True).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch

from suite.interfaces import Generation, GenerationRequest, RunContext

from .checkpoint import checkpoint_files, load_llama, parse_dtype, resolve_checkpoint
from .decoding import Sampling, generate

IMPL_VERSION = "layerskip-ours-1"


def _as_bool(v: Any) -> bool:
    return v.strip().lower() in ("1", "true", "yes", "on") if isinstance(v, str) else bool(v)


def _sha256_files(files: list[Path], root: Path) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(root)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


class _LayerSkipSystem:
    strategy = "autoregressive"

    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        from transformers import AutoTokenizer

        self.params = dict(params)
        name = str(params["model"])
        src = ctx.artifacts.get(name, name) if ctx.artifacts else name
        self.ckpt = resolve_checkpoint(src)
        self.device = ctx.device or "cpu"
        self.dtype = parse_dtype(params.get("dtype") or "float32")
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
        self.eos = self._eos_ids()
        self._sha = _sha256_files(checkpoint_files(self.ckpt), self.ckpt)
        if _as_bool(params.get("warmup", True)):  # first-call allocations and kernel selection stay out of timings
            self._generate_ids(self._encode("hello"), 4, None, "warmup")

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
                        eos_token_ids=self.eos, stop_fn=stop_fn, sampling=self.sampling, generator=gen)

    def identity(self) -> Mapping[str, Any]:
        return {"checkpoint_sha256": self._sha, "impl": IMPL_VERSION, "strategy": self.strategy,
                "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device)}

    def _decode(self, toks: list[int]) -> str:
        # generated tokens only, as the official code decodes them (SentencePiece drops a leading space)
        return self.tokenizer.decode(toks, skip_special_tokens=True)

    def generate(self, request: GenerationRequest, example) -> Generation:
        ids = self._encode(request.prompt)
        stops = tuple(s for s in request.stop if s)
        stop_fn = (lambda toks: any(s in self._decode(toks) for s in stops)) if stops else None
        toks, st = self._generate_ids(ids, request.max_new_tokens, stop_fn, getattr(example, "id", ""))
        text = self._decode(toks)
        cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
        return Generation(text=text[:cut], stats=st.as_dict())

class LayerSkipAR(_LayerSkipSystem):
    strategy = "autoregressive"


class LayerSkipEarlyExit(_LayerSkipSystem):
    strategy = "early_exit"


class LayerSkipSelfSpec(_LayerSkipSystem):
    strategy = "self_speculative"
