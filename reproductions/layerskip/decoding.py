"""Decoding strategies on our ``Llama``: autoregressive, early exit, self-speculative (LayerSkip §3/§4).

All strategies share one entry point, :func:`generate`, and return ``(tokens, DecodeStats)`` for one
prompt; :func:`generate_batch` decodes several ragged prompts at once (greedy autoregressive or early
exit; throughput).  Greedy by default; ``Sampling(sample=True, ...)`` enables temperature/top-k/top-p
sampling with the standard speculative acceptance rule, which preserves the full model's distribution.

``compile=True`` runs every decode step through ``torch.compile`` of ``Llama.decode_step`` (static
shapes: the whole preallocated cache under a position-sliced mask; one graph per verification width,
all built before timing starts). The prompt prefill stays eager.

Self-speculative decoding (``reuse_cache=True``, the paper's KVQ cache):
  * draft ``d`` tokens with layers ``< E`` + the shared head; the KV of layers ``< E`` stays in the cache;
  * keep the layer ``E-1`` outputs of the drafted positions (exit-query cache) so that verification runs
    only layers ``>= E`` on them (plus layers ``< E`` for the last draft token, never run while drafting);
  * accept the agreeing prefix plus one token of the full model; rejected cache slots are simply
    overwritten later (position-indexed static cache);
  * the prompt's layers ``>= E`` are not run before decoding: the first token is drafted from the prompt's
    exit and the first verification runs those layers on prompt + drafts in one pass (one pass over the
    upper layers fewer per generation; the output is unchanged).
With ``reuse_cache=False`` verification recomputes all layers for the ``d + 1`` positions (Table 7 ablation).
``draft_confidence`` > 0 ends a draft run after an unsure draft (fewer wasted drafts; same output).
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
    batch_size: int = 1
    """Rows decoded together; with > 1, wall_s is the batch's and ms_per_token = wall_s / all rows' tokens."""
    layers_per_token: float = 0.0
    """Decoder layers run per generated token after the prompt (drafting + verification for self-speculation),
    counted per position: the deterministic part of the cost, which the gate can compare where wall time on a
    shared machine cannot be (e.g. AR = L, early exit = E, KVQ re-use < no re-use)."""
    sequential_layers_per_token: float = 0.0
    """Decoder layer passes per generated token, one per layer of each forward call however many positions it
    carries: a verification of k + 1 positions through layers [E, L) counts L - E. This is the latency model of
    small-batch decoding (each pass re-reads the layer's weights and pays its fixed overhead), so it is what
    makes self-speculation faster even though it computes more positions than AR (``layers_per_token``)."""

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


def compiled_step(model: Llama, mode: str | None = None):
    """``torch.compile`` of ``model.decode_step``, built once per model (CUDA: CUDA graphs via reduce-overhead).

    Each (layer range, width, batch) is its own static graph: up to d + 4 per self-speculation
    setting, and a table runs several settings in one process, hence the higher limit."""
    fn = getattr(model, "_compiled_step", None)
    if fn is None:
        from torch._dynamo import config as dynamo_config

        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
        if mode is None and model.output.weight.device.type == "cuda":
            mode = "reduce-overhead"
        fn = torch.compile(model.decode_step, mode=mode, fullgraph=True, dynamic=False)
        model._compiled_step = fn
    return fn


class _Steps:
    """The per-step forwards every strategy calls: eager, or compiled with static shapes."""

    def __init__(self, model: Llama, compile: bool = False):
        self.model = model
        self.layer_positions = 0
        """Layers x positions run by decode steps (prefill excluded), per row: see DecodeStats.layers_per_token."""
        self.layer_passes = 0
        """Layers run by decode steps, once per call (prefill excluded): DecodeStats.sequential_layers_per_token."""
        self.fn = compiled_step(model) if compile else None
        self.graphs = compile and model.output.weight.device.type == "cuda"  # outputs reused by the next replay

    def prefill(self, ids: torch.Tensor, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Layers [0, end) over the prompts (always eager: the length varies): hidden [B, P, dim] and the
        next-token logits [B, V] of the last position."""
        h = self.model.run_layers(ids, 0, 0, end)
        return h, self.model.head(h[:, -1])

    def __call__(self, x: torch.Tensor, pos: int, start: int, end: int, head: bool = True):
        """Layers [start, end) on x at cache columns pos..pos+T-1: hidden [B, T, dim], logits [B, T, V] or None."""
        self.count(end - start, x.shape[1])
        if self.fn is None:
            h = self.model.run_layers(x, pos, start, end)
            return h, (self.model.head(h) if head else None)
        if self.graphs:
            torch.compiler.cudagraph_mark_step_begin()
        h, logits = self.fn(x, self.model._cols[pos:pos + x.shape[1]], start, end, head)
        return (h.clone() if self.graphs else h), logits

    def count(self, layers: int, positions: int) -> None:
        """One forward call of ``layers`` layers over ``positions`` positions (per row)."""
        self.layer_positions += layers * positions
        self.layer_passes += layers

    def per_token(self, tokens: int) -> dict[str, float]:
        """The DecodeStats layer counts for a row that generated ``tokens`` tokens."""
        n = max(tokens, 1)
        return {"layers_per_token": self.layer_positions / n, "sequential_layers_per_token": self.layer_passes / n}

    def prepare(self, E: int, d: int, reuse_cache: bool = True) -> None:
        """Compiled: build every graph self-speculation can use (draft, last draft, each verification width) now,
        before any timed step. Call before the prefill: the dummy writes land in columns it then overwrites."""
        m = self.model
        key = (E, d, reuse_cache, m.cache_batch, m.cache_len)
        if self.fn is None or key in getattr(m, "_prepared", set()):
            return
        with torch.inference_mode():
            x = torch.zeros(m.cache_batch, 1, dtype=torch.long, device=m.output.weight.device)
            h, _ = self(x, 0, 0, E)
            self(x, 0, 0, E, head=False)
            # one graph per verification width: padding widths to powers of two (fewer graphs) verified up to 2x
            # the rows, which cost more than it saved (mini, E=1 d=12: compiled 1.525 -> 1.360 ms/token exact)
            for w in range(2, d + 2):
                if reuse_cache:
                    self(h.new_zeros(m.cache_batch, w, h.shape[-1]), 0, E, m.config.n_layers)
                else:
                    self(x.new_zeros(m.cache_batch, w), 0, 0, m.config.n_layers)
        m._prepared = getattr(m, "_prepared", set()) | {key}
        self.layer_positions = self.layer_passes = 0


def _exit_decode(steps: _Steps, ids: torch.Tensor, out: _Out, exit_layer: int, s: Sampling, gen) -> None:
    """Autoregressive decoding with layers < exit_layer then the shared head (exit_layer = L: plain AR)."""
    tok, _ = _pick(steps.prefill(ids, exit_layer)[1][0], s, gen)
    pos = ids.shape[1]
    buf = torch.empty(1, 1, dtype=torch.long, device=ids.device)
    out.add([tok])
    while not out.done:
        buf.fill_(tok)
        tok, _ = _pick(steps(buf, pos, 0, exit_layer)[1][0, -1], s, gen)
        pos += 1
        out.add([tok])


def _draft(steps: _Steps, tok: int, pos: int, E: int, d: int, s: Sampling, gen, eos: set[int], first=None,
           conf: float = 0.0):
    """Draft up to d tokens with layers < E. Returns drafts, exit hidden states (for tok, drafts[:-1]), q dists.
    ``first``: (hidden, logits [1, 1, V]) of a pass already made over tok's position (the prompt prefill).
    ``conf`` > 0: stop after a draft whose probability under the exit is below it."""
    drafts, exits, qs = [], [], []
    buf = torch.empty(1, 1, dtype=torch.long, device=steps.model.output.weight.device)
    for i in range(d):
        if i == 0 and first is not None:
            h, logits = first
        else:
            buf.fill_(tok)
            h, logits = steps(buf, pos + i, 0, E)
        tok, q = _pick(logits[0, -1], s, gen)
        drafts.append(tok), exits.append(h), qs.append(q)
        if tok in eos:
            break
        if conf > 0 and float(q[tok] if q is not None else logits[0, -1].float().softmax(-1).max()) < conf:
            break  # an unsure draft is likely rejected: verify now rather than draft on after it
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


def _verify(steps: _Steps, tok: int, drafts: list[int], exits: list, pos: int, E: int,
            reuse_cache: bool, prompt: bool = False) -> torch.Tensor:
    """Full-model logits [k + 1, V] for the positions of tok and the k drafts (rejected drafts' cache columns are
    overwritten before any accepted query reaches them). ``prompt``: ``exits[0]`` covers the whole prompt, whose
    layers >= E run here too (from column 0, eagerly)."""
    model, k = steps.model, len(drafts)
    L = model.config.n_layers
    dev = model.output.weight.device
    if reuse_cache:  # layers < E for the last draft only, then layers >= E on all k + 1 positions
        last, _ = steps(torch.tensor([[drafts[-1]]], device=dev), pos + k, 0, E, head=False)
        if prompt:  # the prompt's positions are prefill work, not counted in layers_per_token
            steps.count(L - E, k + 1)
            h = model.run_layers(torch.cat(exits + [last], dim=1), 0, E, L)
            return model.head(h[0, -(k + 1):])
        _, logits = steps(torch.cat(exits + [last], dim=1), pos, E, L)
    else:  # ablation: recompute every layer for the k + 1 positions
        _, logits = steps(torch.tensor([[tok] + drafts], device=dev), pos, 0, L)
    return logits[0]


def _self_spec_decode(steps: _Steps, ids: torch.Tensor, out: _Out, E: int, d: int, reuse_cache: bool,
                      s: Sampling, gen, st: DecodeStats, conf: float = 0.0) -> None:
    """Draft/verify cycles. With the KVQ cache the prompt's layers >= E are not run up front: the first token is
    drafted from the prompt's exit and the first verification runs those layers on prompt + drafts together,
    one pass over the upper layers' weights fewer per generation, same output."""
    L = steps.model.config.n_layers
    steps.prepare(E, d, reuse_cache)
    first = None
    if reuse_cache:
        h, logits = steps.prefill(ids, E)
        first, tok, pos = (h, logits[:, None]), int(ids[0, -1]), ids.shape[1] - 1  # tok: last prompt token
    else:
        tok, _ = _pick(steps.prefill(ids, L)[1][0], s, gen)
        pos = ids.shape[1]  # position of `tok`, which is not yet in the cache
        out.add([tok])
    while not out.done:
        # k drafts yield up to k + 1 tokens; with one token of budget left, still draft one (the first token a
        # cycle yields is the full model's either way) so that every cycle has the same shapes
        n = max(1, min(d, out.left() - 1))
        drafts, exits, qs = _draft(steps, tok, pos, E, n, s, gen, out.eos, first, conf)
        logits = _verify(steps, tok, drafts, exits, pos, E, reuse_cache, prompt=first is not None)
        first = None
        new = _accept(logits, drafts, qs, s, gen)
        st.drafted += len(drafts)
        st.accepted += len(new) - 1
        st.verify_steps += 1
        out.add(new)
        pos += len(new)
        tok = new[-1]


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _finish(st: DecodeStats, t0: float, generated: int, tokens_in_wall: int) -> DecodeStats:
    st.wall_s = time.perf_counter() - t0
    st.generated_tokens = generated
    st.acceptance_rate = st.accepted / st.drafted if st.drafted else 0.0
    st.ms_per_token = 1000.0 * st.wall_s / max(tokens_in_wall, 1)
    return st


def generate(model: Llama, prompt_ids: Sequence[int] | torch.Tensor, max_new_tokens: int, *,
             strategy: str = "autoregressive", exit_layer: int | None = None, num_speculations: int = 1,
             reuse_cache: bool = True, eos_token_ids: Sequence[int] = (), stop_fn: StopFn | None = None,
             sampling: Sampling | None = None, generator: torch.Generator | None = None,
             compile: bool = False, draft_confidence: float = 0.0) -> tuple[list[int], DecodeStats]:
    """Generate for one prompt. strategy: "autoregressive" | "early_exit" | "self_speculative".

    ``num_speculations`` d: drafts per verification at most; ``draft_confidence`` > 0 ends a draft run early
    after a token the exit gives less than that probability (0 = always d, as the paper; the output is the
    same either way, only the cost changes)."""
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
    model.setup_cache(_cache_len(ids.shape[1] + max_new_tokens + num_speculations + 2, compile))
    st = DecodeStats(prompt_tokens=ids.shape[1])
    out = _Out(max_new_tokens, eos_token_ids, stop_fn)
    steps = _Steps(model, compile)
    _sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        if strategy == "autoregressive":
            _exit_decode(steps, ids, out, L, s, generator)
        elif strategy == "early_exit":
            _exit_decode(steps, ids, out, exit_layer, s, generator)
        elif strategy == "self_speculative":
            _self_spec_decode(steps, ids, out, exit_layer, num_speculations, reuse_cache, s, generator, st,
                              draft_confidence)
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
    _sync(dev)
    vars(st).update(steps.per_token(len(out.tokens)))
    return out.tokens, _finish(st, t0, len(out.tokens), len(out.tokens))


def _cache_len(need: int, compile: bool) -> int:
    """Compiled steps see the whole cache: round its length up so most prompts reuse one shape."""
    return -(-need // 128) * 128 if compile else need


def ragged_from_padded(ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """Rows of a padded batch (left or right padding, 1 = token, 0 = pad) as token lists without the pads."""
    if ids.shape != attention_mask.shape or ids.dim() != 2:
        raise ValueError(f"ids {tuple(ids.shape)} and attention_mask {tuple(attention_mask.shape)} must be equal [B, T]")
    return [row[m.bool()].tolist() for row, m in zip(ids, attention_mask)]


def generate_batch(model: Llama, prompts: Sequence[Sequence[int]], max_new_tokens: int | Sequence[int], *,
                   exit_layer: int | None = None, eos_token_ids: Sequence[int] = (),
                   stop_fns: Sequence[StopFn | None] | None = None,
                   compile: bool = False) -> tuple[list[list[int]], list[DecodeStats]]:
    """Greedy autoregressive (or early-exit at ``exit_layer``) decoding of ragged prompts in one batch.

    Prompts are left-padded; pad columns are masked and each row's rotary positions start at its first token,
    so row b yields what ``generate`` yields for it alone. Rows stop on their own (EOS, stop rule, budget);
    finished rows ride along until every row is done. ``max_new_tokens``: one budget, or one per row."""
    L = model.config.n_layers
    E = L if exit_layer is None else exit_layer
    if not 1 <= E <= L:
        raise ValueError(f"early exit needs 1 <= exit_layer <= {L}, got {exit_layer}")
    lens = [len(p) for p in prompts]
    if not lens or min(lens) == 0:
        raise ValueError("generate_batch needs at least one prompt and no empty prompt (add BOS)")
    dev, B, P = model.output.weight.device, len(prompts), max(lens)
    ids = torch.zeros(B, P, dtype=torch.long, device=dev)
    for b, p in enumerate(prompts):
        ids[b, P - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
    budgets = [max_new_tokens] * B if isinstance(max_new_tokens, int) else list(max_new_tokens)
    model.setup_cache(_cache_len(P + max(budgets) + 2, compile), B, pad=[P - n for n in lens])
    outs = [_Out(m, eos_token_ids, fn) for m, fn in zip(budgets, stop_fns or [None] * B)]
    steps = _Steps(model, compile)
    _sync(dev)
    t0 = time.perf_counter()
    with torch.inference_mode():
        nxt, pos = steps.prefill(ids, E)[1].argmax(-1), P
        while not all(o.done for o in outs):
            for o, t in zip(outs, nxt.tolist()):
                o.add([t])
            if all(o.done for o in outs):
                break
            nxt = steps(nxt[:, None], pos, 0, E)[1][:, -1].argmax(-1)
            pos += 1
    _sync(dev)
    total = sum(len(o.tokens) for o in outs)
    stats = [_finish(DecodeStats(prompt_tokens=n, batch_size=B, **steps.per_token(len(o.tokens))), t0,
                     len(o.tokens), total) for n, o in zip(lens, outs)]
    return [o.tokens for o in outs], stats
