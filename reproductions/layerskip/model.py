"""A compact Llama (Llama 1/2/3 family) with a static KV cache for LayerSkip decoding.

Layout notes:
* q/k/v and gate/up projections are fused (``attn.wqkv``, ``mlp.w13``) to cut the number of
  kernel launches per layer; ``checkpoint.py`` maps them to and from Hugging Face key names.
* The KV cache is preallocated per layer (``setup_cache``).  Writes are position indexed, so
  discarding rejected draft tokens needs no copy: the caller simply continues from an earlier
  position and the stale slots are hidden by the causal mask until they are overwritten.
* ``run_layers`` runs any contiguous range of layers with the cache, which is all that early exit
  and self-speculative decoding need (see ``decoding.py``).  Given an int position it attends to
  the cache prefix only (fastest in eager mode); given a tensor of cache columns it attends to the
  whole preallocated cache through a mask sliced by position, so every decode step has the same
  shapes and ``torch.compile`` (CUDA graphs included) can capture it (``decode_step``).
* A batch of ragged prompts is left-padded (``setup_cache(..., pad=...)``): pad columns are masked
  out of every row's attention and rotary positions count from each row's first real token, so a
  row decodes exactly as it would alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from suite import cpu_linear


@dataclass
class LlamaConfig:
    vocab_size: int
    dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    intermediate_size: int
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None
    max_seq_len: int = 2048
    tie_word_embeddings: bool = False
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    head_dim: int | None = None  # None = dim // n_heads

    def __post_init__(self):
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")

    @classmethod
    def from_hf(cls, d: dict) -> "LlamaConfig":
        """Build from a Hugging Face ``config.json`` dict (transformers 4.x or 5.x layout)."""
        if d.get("attention_bias") or d.get("mlp_bias"):
            raise ValueError("Llama checkpoints with attention/MLP biases are not supported")
        if d.get("hidden_act", "silu") != "silu":
            raise ValueError(f"unsupported hidden_act {d.get('hidden_act')!r}")
        rope_theta = d.get("rope_theta")
        scaling = d.get("rope_scaling")
        params = d.get("rope_parameters")
        if isinstance(params, dict):  # transformers >= 5 keeps theta and scaling in one dict
            rope_theta = params.get("rope_theta", rope_theta)
            if scaling is None and params.get("rope_type", params.get("type", "default")) != "default":
                scaling = params
        if scaling is not None:
            scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
            scaling.setdefault("rope_type", scaling.pop("type", "default"))
            if scaling["rope_type"] == "default":
                scaling = None
            elif scaling["rope_type"] == "llama3":
                scaling.setdefault("original_max_position_embeddings", d.get("max_position_embeddings", 2048))
        n_heads = d["num_attention_heads"]
        return cls(
            vocab_size=d["vocab_size"], dim=d["hidden_size"], n_layers=d["num_hidden_layers"],
            n_heads=n_heads, n_kv_heads=d.get("num_key_value_heads") or n_heads,
            intermediate_size=d["intermediate_size"], norm_eps=d.get("rms_norm_eps", 1e-6),
            rope_theta=float(rope_theta if rope_theta is not None else 10000.0), rope_scaling=scaling,
            max_seq_len=d.get("max_position_embeddings", 2048),
            tie_word_embeddings=bool(d.get("tie_word_embeddings", False)),
            bos_token_id=d.get("bos_token_id"), eos_token_id=d.get("eos_token_id"),
            pad_token_id=d.get("pad_token_id"), head_dim=d.get("head_dim") or d["hidden_size"] // n_heads,
        )

    def to_hf(self) -> dict:
        """A ``config.json`` dict that transformers 4.x and 5.x both accept."""
        rope_params = {"rope_type": "default", "rope_theta": self.rope_theta}
        if self.rope_scaling:
            rope_params.update(self.rope_scaling)
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": self.vocab_size, "hidden_size": self.dim, "num_hidden_layers": self.n_layers,
            "num_attention_heads": self.n_heads, "num_key_value_heads": self.n_kv_heads,
            "head_dim": self.head_dim, "intermediate_size": self.intermediate_size, "hidden_act": "silu",
            "rms_norm_eps": self.norm_eps, "max_position_embeddings": self.max_seq_len,
            "rope_theta": self.rope_theta, "rope_scaling": dict(self.rope_scaling) if self.rope_scaling else None,
            "rope_parameters": rope_params, "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": False, "mlp_bias": False, "bos_token_id": self.bos_token_id,
            "eos_token_id": self.eos_token_id, "pad_token_id": self.pad_token_id, "use_cache": True,
        }


def rope_inv_freq(cfg: LlamaConfig) -> torch.Tensor:
    """Inverse frequencies (float32, length head_dim/2) incl. linear and Llama 3 scaling."""
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    sc = cfg.rope_scaling
    kind = (sc or {}).get("rope_type", "default")
    if kind == "linear":
        inv = inv / sc["factor"]
    elif kind == "llama3":
        factor, lo, hi = sc["factor"], sc["low_freq_factor"], sc["high_freq_factor"]
        old_len = sc["original_max_position_embeddings"]
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > old_len / lo, inv / factor, inv)
        smooth = (old_len / wavelen - lo) / (hi - lo)
        mid = (wavelen >= old_len / hi) & (wavelen <= old_len / lo)
        inv = torch.where(mid, (1 - smooth) * scaled / factor + smooth * scaled, scaled)
    elif kind != "default":
        raise ValueError(f"unsupported rope_type {kind!r}")
    return inv


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, T, heads, hd]; cos/sin: [T, 1, hd] or [B, T, 1, hd] from ``Llama.rope`` (half-split convention, as HF
    Llama). ``sin`` comes with its first half negated, so rotate-half is a plain roll: 3 kernels instead of 7."""
    return torch.addcmul(x * cos, x.roll(x.shape[-1] // 2, -1), sin)


def linear(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """``F.linear(x, w)``, through oneDNN on CPU in fp32 (``suite.cpu_linear``: 1.3-3x faster than MKL on AMD CPUs;
    few-row decoding products cost about what one row costs)."""
    return cpu_linear.linear(x, w)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)  # one kernel: decoding is launch-bound
        # normalise in float32 and cast back before the weight, as the reference implementation does
        y = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return self.weight * y


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.wqkv = nn.Linear(cfg.dim, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.dim, bias=False)
        self.gqa = cfg.n_heads != cfg.n_kv_heads
        # preallocated [B, n_kv, S, hd] buffers (non-persistent: never in a state dict), see Llama.setup_cache
        self.register_buffer("k_cache", None, persistent=False)
        self.register_buffer("v_cache", None, persistent=False)

    def forward(self, x, cos, sin, cols: int | torch.Tensor | None = None, span: int = 0,
                mask: torch.Tensor | None = None):
        """``cols`` None: plain causal attention over ``x``. Else write k/v into cache columns ``cols``
        (first column as an int, or a LongTensor [T]) and attend to cache columns ``0..span-1`` under ``mask``."""
        B, T, _ = x.shape
        H, KV = self.n_heads, self.n_kv
        # the weights directly: a Linear module call costs more than the tiny GEMM when decoding
        qkv = linear(x, self.wqkv.weight).view(B, T, H + 2 * KV, self.hd)
        qk = apply_rope(qkv[:, :, : H + KV], cos, sin)
        q = qk[:, :, :H].transpose(1, 2)
        k = qk[:, :, H:].transpose(1, 2)
        v = qkv[:, :, H + KV:].transpose(1, 2)
        if cols is None:  # plain causal attention over the given sequence
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=self.gqa)
        else:
            kc, vc = self.k_cache, self.v_cache
            if kc.shape[0] != B:
                kc, vc = kc[:B], vc[:B]
            if isinstance(cols, int):
                kc[:, :, cols:cols + T] = k
                vc[:, :, cols:cols + T] = v
            else:
                kc.index_copy_(2, cols, k)
                vc.index_copy_(2, cols, v)
            y = F.scaled_dot_product_attention(q, kc[:, :, :span], vc[:, :, :span], attn_mask=mask,
                                               enable_gqa=self.gqa)
        return linear(y.transpose(1, 2).reshape(B, T, H * self.hd), self.wo.weight)


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.inter = cfg.intermediate_size
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.intermediate_size, bias=False)  # [gate; up]
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.dim, bias=False)

    def forward(self, x):
        gate, up = linear(x, self.w13.weight).split(self.inter, dim=-1)
        return linear(F.silu(gate) * up, self.w2.weight)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, cols: int | torch.Tensor | None = None, span: int = 0,
                mask: torch.Tensor | None = None):
        h = x + self.attn(self.attn_norm(x), cos, sin, cols, span, mask)
        return h + self.mlp(self.mlp_norm(h))


class Llama(nn.Module):
    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = config
        self.tok_embeddings = nn.Embedding(config.vocab_size, config.dim)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = RMSNorm(config.dim, config.norm_eps)
        self.output = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.tie_weights()
        self._rope: tuple[torch.Tensor, torch.Tensor] | None = None  # float32 cos/sin tables [S, 1, hd]
        self._rope_cast: dict = {}
        self.cache_len = 0
        self.cache_batch = 0
        self._cols: torch.Tensor | None = None  # arange(S): cache column indices
        self._causal: torch.Tensor | None = None  # [S, S] bool, row c: columns 0..c
        self._pad: torch.Tensor | None = None  # [B] left-padding per row; None = no padding
        self._key_ok: torch.Tensor | None = None  # [B, 1, S] bool: not a pad column
        if self.output.weight.device.type != "meta":
            self.init_weights()

    # -- parameters -------------------------------------------------------------------------
    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.output.weight = self.tok_embeddings.weight

    @torch.no_grad()
    def init_weights(self, std: float = 0.02) -> None:
        """Normal(0, std) for linear/embedding weights, ones for norms (as HF Llama initialises)."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std)
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)

    # -- rotary tables ----------------------------------------------------------------------
    def rope(self, start: int, length: int, dtype: torch.dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) for positions start..start+length-1, [length, 1, hd]; sin's first half is negated."""
        need = start + length
        if self._rope is None or self._rope[0].shape[0] < need or self._rope[0].device != torch.device(device):
            size = max(need, 256 if self._rope is None else 2 * self._rope[0].shape[0])
            inv = rope_inv_freq(self.config).to(device)
            freqs = torch.outer(torch.arange(size, device=device, dtype=torch.float32), inv)
            emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
            sin = emb.sin()
            sin[..., : inv.shape[0]].neg_()  # the sign of rotate-half (see apply_rope)
            self._rope = (emb.cos(), sin)
            self._rope_cast = {}
        if dtype not in self._rope_cast:
            self._rope_cast[dtype] = (self._rope[0].to(dtype), self._rope[1].to(dtype))
        cos, sin = self._rope_cast[dtype]
        return cos[start:need], sin[start:need]

    # -- plain forwards ---------------------------------------------------------------------
    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.tok_embeddings(input_ids)

    def head(self, h: torch.Tensor) -> torch.Tensor:
        """Shared final norm + LM head: usable on the output of any layer (early exit)."""
        return linear(self.norm(h), self.output.weight)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_train(input_ids)[-1])

    def forward_train(self, input_ids: torch.Tensor, keep_masks: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Hidden states after each layer (pre final norm). ``keep_masks[l]``: [B] bool, False skips layer l
        for that sample (only kept rows are computed)."""
        h = self.embed(input_ids)
        cos, sin = self.rope(0, input_ids.shape[1], h.dtype, h.device)
        outs = []
        for i, layer in enumerate(self.layers):
            keep = None if keep_masks is None else keep_masks[i]
            if keep is None:
                h = layer(h, cos, sin)
            else:
                idx = keep.nonzero().squeeze(1)
                if idx.numel() == h.shape[0]:
                    h = layer(h, cos, sin)
                elif idx.numel() > 0:
                    h = h.index_copy(0, idx, layer(h.index_select(0, idx), cos, sin))
            outs.append(h)
        return outs

    # -- cached forwards for decoding -------------------------------------------------------
    def setup_cache(self, max_seq_len: int, batch_size: int = 1, pad: Sequence[int] | None = None) -> None:
        """Make the KV cache hold ``batch_size`` rows of ``max_seq_len`` columns and set each row's left padding.

        The buffers are reallocated only for another batch size, when too short, or on the wrong device/dtype, so a
        compiled decode step keeps seeing the same shapes. ``pad[b]``: pad columns in front of row b's prompt."""
        w = self.output.weight
        a = self.layers[0].attn
        same = a.k_cache is not None and a.k_cache.dtype == w.dtype and a.k_cache.device == w.device
        if not (same and a.k_cache.shape[0] == batch_size and a.k_cache.shape[2] >= max_seq_len):
            # exactly batch_size rows (a compiled step then sees one cache shape per batch size); the length
            # only grows, so most calls keep the shape a compiled step was built for
            S = max(max_seq_len, self.cache_len if same else 0)
            shape = (batch_size, self.config.n_kv_heads, S, self.config.head_dim)
            for layer in self.layers:
                layer.attn.k_cache = torch.zeros(shape, dtype=w.dtype, device=w.device)
                layer.attn.v_cache = torch.zeros(shape, dtype=w.dtype, device=w.device)
            self.cache_len, self.cache_batch = S, shape[0]
            self._cols = torch.arange(S, device=w.device)
            self._causal = torch.ones(S, S, dtype=torch.bool, device=w.device).tril()
            self.rope(0, S, w.dtype, w.device)  # the rotary table covers every cache column from now on
            if w.device.type == "cuda":  # CUDA graphs: update the caches in place, never copy them per replay
                from torch._dynamo import mark_static_address

                for t in [self._cols, self._causal, *self._rope_cast[w.dtype]] + [
                        b for layer in self.layers for b in (layer.attn.k_cache, layer.attn.v_cache)]:
                    mark_static_address(t)
        self._set_padding(pad, batch_size)

    def _set_padding(self, pad: Sequence[int] | None, batch_size: int) -> None:
        if pad is None or not any(pad):
            self._pad = self._key_ok = None
            return
        if len(pad) != batch_size or min(pad) < 0:
            raise ValueError(f"pad must hold {batch_size} non-negative counts, got {list(pad)}")
        self._pad = torch.tensor(list(pad), dtype=torch.long, device=self._cols.device)
        self._key_ok = (self._cols[None, :] >= self._pad[:, None])[:, None, :]  # [B, 1, S]

    def _rope_at(self, cols: int | torch.Tensor, T: int, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin for the T columns from ``cols``: [T, 1, hd], or [B, T, 1, hd] when rows are padded."""
        if self._pad is None and isinstance(cols, int):
            return self.rope(cols, T, h.dtype, h.device)
        cos, sin = self.rope(0, self.cache_len, h.dtype, h.device)
        idx = self._cols[cols:cols + T] if isinstance(cols, int) else cols
        if self._pad is not None:  # a row's positions count from its first real token
            idx = (idx[None, :] - self._pad[:, None]).clamp_min(0)
        return cos[idx], sin[idx]

    def _mask(self, cols: int | torch.Tensor, T: int, span: int) -> torch.Tensor | None:
        """Which of the ``span`` cache columns each query may attend to: [T, span], or [B, 1, T, span] if padded.

        Columns after a query's own (stale or not yet written) are hidden; pad columns are hidden except from
        the pad query itself (so no softmax row is empty)."""
        if isinstance(cols, int):
            rows = self._causal[cols:cols + T, :span]
            if self._key_ok is None:
                return None if T == 1 else rows
            own = self._cols[cols:cols + T, None] == self._cols[None, :span]
        else:
            rows = self._causal.index_select(0, cols)
            if self._key_ok is None:
                return rows
            own = cols[:, None] == self._cols[None, :]
        return (rows & (self._key_ok[..., :span] | own))[:, None]

    def run_layers(self, x: torch.Tensor, pos: int | torch.Tensor, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Run layers[start:end] on T tokens using/updating the KV cache.

        ``pos``: an int (the tokens sit at cache columns pos..pos+T-1; attention reads the cache prefix only) or a
        LongTensor [T] of columns (attention reads the whole cache through a mask: static shapes, see
        ``decode_step``). ``x`` is token ids [B, T] when ``start == 0`` and hidden states [B, T, dim] otherwise.
        Returns the hidden state
        after layer ``end - 1`` (pre final norm)."""
        end = self.config.n_layers if end is None else end
        h = self.embed(x) if start == 0 else x
        T = h.shape[1]
        if isinstance(pos, int):
            if pos + T > self.cache_len:
                raise ValueError(f"KV cache too small: need {pos + T} positions, have {self.cache_len}")
            span = pos + T
        else:
            span = self.cache_len
        cos, sin = self._rope_at(pos, T, h)
        mask = self._mask(pos, T, span)
        layers = self.layers
        for i in range(start, end):
            h = layers[i](h, cos, sin, pos, span, mask)
        return h

    def decode_step(self, x: torch.Tensor, cols: torch.Tensor, start: int, end: int,
                    with_head: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One static-shape step (the unit ``torch.compile`` captures): layers[start:end] on the tokens at cache
        columns ``cols``, plus the shared head when ``with_head``. Returns (hidden, logits or None)."""
        h = self.run_layers(x, cols, start, end)
        return h, (self.head(h) if with_head else None)
