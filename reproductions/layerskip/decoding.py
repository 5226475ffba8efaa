"""Decoding strategies on our ``Llama``: autoregressive, early exit, self-speculative (LayerSkip §3/§4).

All strategies share one entry point, :func:`generate`, and return ``(tokens, DecodeStats)``.
Batch size 1.  Greedy by default; ``Sampling(sample=True, ...)`` enables temperature/top-k/top-p
sampling with the standard speculative acceptance rule, which preserves the full model's distribution.

Self-speculative decoding (``reuse_cache=True``, the paper's KVQ cache):
  * draft ``d`` tokens with layers ``< E`` + the shared head; the KV of layers ``< E`` stays in the cache;
  * keep the layer ``E-1`` outputs of the drafted positions (exit-query cache) so that verification runs
    only layers ``>= E`` on them (plus layers ``< E`` for the last draft token, never run while drafting);
  * accept the agreeing prefix plus one token of the full model; rejected cache slots are simply
    overwritten later (position-indexed static cache).
With ``reuse_cache=False`` verification recomputes all layers for the ``d + 1`` positions (Table 7 ablation).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from .model import Llama


@dataclass
class Sampling:
    sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0


@dataclass
class DecodeStats:
    prompt_tokens: int = 0
    generated_tokens: int = 0
    drafted: int = 0
    accepted: int = 0
    acceptance_rate: float = 0.0
    wall_s: float = 0.0
    ms_per_token: float = 0.0
    verify_steps: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


StopFn = Callable[[list[int]], bool]


def probs(logits: torch.Tensor, s: Sampling) -> torch.Tensor:
    """Filtered next-token distribution (float32) for logits [..., V]."""
    logits = logits.float() / max(s.temperature, 1e-6)
    if s.top_k and s.top_k < logits.shape[-1]:
        kth = logits.topk(s.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if s.top_p < 1.0:
        srt, idx = logits.sort(dim=-1, descending=True)
        cum = srt.softmax(-1).cumsum(-1)
        drop = (cum - srt.softmax(-1)) >= s.top_p  # keep the smallest prefix with mass >= top_p
        logits = logits.masked_fill(drop.scatter(-1, idx, drop), float("-inf"))
    return logits.softmax(-1)


def _pick(logits: torch.Tensor, s: Sampling, gen) -> tuple[int, torch.Tensor | None]:
    """Next token from logits [V] (greedy or sampled); also returns the distribution when sampling."""
    if not s.sample:
        return int(logits.argmax()), None
    p = probs(logits, s)
    return int(torch.multinomial(p, 1, generator=gen)), p


class _Out:
    """Accumulates generated tokens and applies every stop rule token by token."""

    def __init__(self, max_new: int, eos: Sequence[int], stop_fn: StopFn | None):
        self.tokens: list[int] = []
        self.max_new, self.eos, self.stop_fn = max_new, set(eos), stop_fn
        self.done = max_new <= 0

    def add(self, toks: Sequence[int]) -> None:
        for t in toks:
            if self.done:
                return
            self.tokens.append(t)
            self.done = (len(self.tokens) >= self.max_new or t in self.eos
                         or (self.stop_fn is not None and self.stop_fn(self.tokens)))

    def left(self) -> int:
        return self.max_new - len(self.tokens)


def _exit_decode(model: Llama, ids: torch.Tensor, out: _Out, exit_layer: int, s: Sampling, gen) -> None:
    """Autoregressive decoding with layers < exit_layer then the shared head (exit_layer = L: plain AR)."""
    h = model.run_layers(ids, 0, 0, exit_layer)
    tok, _ = _pick(model.head(h[0, -1]), s, gen)
    pos = ids.shape[1]
    buf = torch.empty(1, 1, dtype=torch.long, device=ids.device)
    out.add([tok])
    while not out.done:
        buf.fill_(tok)
        tok, _ = _pick(model.head(model.run_layers(buf, pos, 0, exit_layer)[0, -1]), s, gen)
        pos += 1
        out.add([tok])


def _draft(model: Llama, tok: int, pos: int, E: int, d: int, s: Sampling, gen, eos: set[int]):
    """Draft up to d tokens with layers < E. Returns drafts, exit hidden states (for tok, drafts[:-1]), q dists."""
    drafts, exits, qs = [], [], []
    buf = torch.empty(1, 1, dtype=torch.long, device=model.output.weight.device)
    for i in range(d):
        buf.fill_(tok)
        h = model.run_layers(buf, pos + i, 0, E)
        tok, q = _pick(model.head(h[0, -1]), s, gen)
        drafts.append(tok), exits.append(h), qs.append(q)
        if tok in eos:
            break
    return drafts, exits, qs


def _accept(logits: torch.Tensor, drafts: list[int], qs: list, s: Sampling, gen) -> list[int]:
    """Tokens to append after verification: the accepted draft prefix plus one token of the full model."""
    k = len(drafts)
    if not s.sample:
        pred = logits.argmax(-1).tolist()  # [k + 1]
        n = 0
        while n < k and pred[n] == drafts[n]:
            n += 1
        return drafts[:n] + [pred[n]]
    p = probs(logits, s)  # [k + 1, V]
    u = torch.rand(k, generator=gen, device=p.device).tolist()
    for i, x in enumerate(drafts):
        px, qx = float(p[i, x]), float(qs[i][x])
        if u[i] < min(1.0, px / qx):
            continue
        resid = (p[i] - qs[i]).clamp_min(0)
        resid = resid / resid.sum() if float(resid.sum()) > 0 else p[i]
        return drafts[:i] + [int(torch.multinomial(resid, 1, generator=gen))]
    return drafts + [int(torch.multinomial(p[k], 1, generator=gen))]


def _self_spec_decode(model: Llama, ids: torch.Tensor, out: _Out, E: int, d: int, reuse_cache: bool,
                      s: Sampling, gen, st: DecodeStats) -> None:
    L = model.config.n_layers
    tok, _ = _pick(model.head(model.run_layers(ids, 0, 0, L)[0, -1]), s, gen)  # prefill all layers
    pos = ids.shape[1]  # position of `tok`, which is not yet in the cache
    out.add([tok])
    buf = torch.empty(1, 1, dtype=torch.long, device=ids.device)
    while not out.done:
        n = min(d, out.left() - 1)
        if n <= 0:  # budget for one token only: plain full-model step
            buf.fill_(tok)
            tok, _ = _pick(model.head(model.run_layers(buf, pos, 0, L)[0, -1]), s, gen)
            pos += 1
            out.add([tok])
            continue
        drafts, exits, qs = _draft(model, tok, pos, E, n, s, gen, out.eos)
        k = len(drafts)
        if reuse_cache:  # layers < E for the last draft only, then layers >= E on all k + 1 positions
            buf.fill_(drafts[-1])
            last = model.run_layers(buf, pos + k, 0, E)
            h = model.run_layers(torch.cat(exits + [last], dim=1), pos, E, L)
        else:  # ablation: recompute every layer for the k + 1 positions
            x = torch.tensor([[tok] + drafts], dtype=torch.long, device=ids.device)
            h = model.run_layers(x, pos, 0, L)
        new = _accept(model.head(h[0]), drafts, qs, s, gen)
        st.drafted += k
        st.accepted += len(new) - 1
        st.verify_steps += 1
        out.add(new)
        pos += len(new)
        tok = new[-1]


def generate(model: Llama, prompt_ids: Sequence[int] | torch.Tensor, max_new_tokens: int, *,
             strategy: str = "autoregressive", exit_layer: int | None = None, num_speculations: int = 1,
             reuse_cache: bool = True, eos_token_ids: Sequence[int] = (), stop_fn: StopFn | None = None,
             sampling: Sampling | None = None, generator: torch.Generator | None = None) -> tuple[list[int], DecodeStats]:
    """Generate for one prompt. strategy: "autoregressive" | "early_exit" | "self_speculative"."""
    s = sampling or Sampling()
    L = model.config.n_layers
    dev = model.output.weight.device
    ids = torch.as_tensor(prompt_ids, dtype=torch.long, device=dev).view(1, -1)
    if ids.shape[1] == 0:
        raise ValueError("empty prompt: at least one token (e.g. BOS) is required")
    if strategy != "autoregressive" and not (exit_layer is not None and 1 <= exit_layer <= L):
        raise ValueError(f"{strategy} needs 1 <= exit_layer <= {L}, got {exit_layer}")
    if strategy == "self_speculative" and num_speculations < 1:
        raise ValueError("num_speculations must be >= 1")
    model.setup_cache(ids.shape[1] + max_new_tokens + num_speculations + 2)
    st = DecodeStats(prompt_tokens=ids.shape[1])
    out = _Out(max_new_tokens, eos_token_ids, stop_fn)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if strategy == "autoregressive":
            _exit_decode(model, ids, out, L, s, generator)
        elif strategy == "early_exit":
            _exit_decode(model, ids, out, exit_layer, s, generator)
        elif strategy == "self_speculative":
            _self_spec_decode(model, ids, out, exit_layer, num_speculations, reuse_cache, s, generator, st)
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    st.wall_s = time.perf_counter() - t0
    st.generated_tokens = len(out.tokens)
    st.acceptance_rate = st.accepted / st.drafted if st.drafted else 0.0
    st.ms_per_token = 1000.0 * st.wall_s / max(st.generated_tokens, 1)
    return out.tokens, st
