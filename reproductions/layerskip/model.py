"""A compact Llama (Llama 1/2/3 family) with a static KV cache for LayerSkip decoding.

Layout notes:
* q/k/v and gate/up projections are fused (``attn.wqkv``, ``mlp.w13``) to cut the number of
  kernel launches per layer; ``checkpoint.py`` maps them to and from Hugging Face key names.
* The KV cache is preallocated per layer (``setup_cache``).  Writes are position indexed, so
  discarding rejected draft tokens needs no copy: the caller simply continues from an earlier
  position and the stale slots are overwritten before any query can attend to them.
* ``run_layers`` runs any contiguous range of layers with the cache, which is all that early exit
  and self-speculative decoding need (see ``decoding.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import nn


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
    """x: [B, T, heads, hd]; cos/sin: [T, 1, hd] (half-split convention, as HF Llama)."""
    half = x.shape[-1] // 2
    rot = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rot * sin


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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
        self.k_cache: torch.Tensor | None = None  # [B, n_kv, S, hd]
        self.v_cache: torch.Tensor | None = None

    def forward(self, x, cos, sin, pos: int | None = None, mask: torch.Tensor | None = None):
        B, T, _ = x.shape
        H, KV = self.n_heads, self.n_kv
        qkv = self.wqkv(x).view(B, T, H + 2 * KV, self.hd)
        qk = apply_rope(qkv[:, :, : H + KV], cos, sin)
        q = qk[:, :, :H].transpose(1, 2)
        k = qk[:, :, H:].transpose(1, 2)
        v = qkv[:, :, H + KV:].transpose(1, 2)
        if pos is None:  # plain causal attention over the given sequence
            y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1, enable_gqa=self.gqa)
        else:  # write into the static cache at positions pos..pos+T-1, attend to 0..pos+T-1
            self.k_cache[:B, :, pos:pos + T] = k
            self.v_cache[:B, :, pos:pos + T] = v
            k, v = self.k_cache[:B, :, : pos + T], self.v_cache[:B, :, : pos + T]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=self.gqa)
        return self.wo(y.transpose(1, 2).reshape(B, T, H * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.inter = cfg.intermediate_size
        self.w13 = nn.Linear(cfg.dim, 2 * cfg.intermediate_size, bias=False)  # [gate; up]
        self.w2 = nn.Linear(cfg.intermediate_size, cfg.dim, bias=False)

    def forward(self, x):
        gate, up = self.w13(x).split(self.inter, dim=-1)
        return self.w2(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, pos: int | None = None, mask: torch.Tensor | None = None):
        h = x + self.attn(self.attn_norm(x), cos, sin, pos, mask)
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
        need = start + length
        if self._rope is None or self._rope[0].shape[0] < need or self._rope[0].device != torch.device(device):
            size = max(need, 256 if self._rope is None else 2 * self._rope[0].shape[0])
            inv = rope_inv_freq(self.config).to(device)
            freqs = torch.outer(torch.arange(size, device=device, dtype=torch.float32), inv)
            emb = torch.cat((freqs, freqs), dim=-1)[:, None, :]
            self._rope = (emb.cos(), emb.sin())
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
        x = self.norm(h)
        rows = x.numel() // x.shape[-1]
        if 1 < rows <= 16 and not torch.is_grad_enabled():
            # few rows (verification of a draft): W @ x^T is much faster on CPU than the small-M GEMM
            # that F.linear picks for a large vocabulary
            w = self.output.weight
            return (w @ x.reshape(rows, -1).t()).t().reshape(*x.shape[:-1], w.shape[0])
        return self.output(x)

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
    def setup_cache(self, max_seq_len: int, batch_size: int = 1) -> None:
        """(Re)allocate the per-layer KV cache if it is too small or on the wrong device/dtype."""
        w = self.output.weight
        a = self.layers[0].attn
        ok = (a.k_cache is not None and a.k_cache.shape[0] >= batch_size and a.k_cache.shape[2] >= max_seq_len
              and a.k_cache.dtype == w.dtype and a.k_cache.device == w.device)
        if ok:
            return
        shape = (batch_size, self.config.n_kv_heads, max_seq_len, self.config.head_dim)
        for layer in self.layers:
            layer.attn.k_cache = torch.zeros(shape, dtype=w.dtype, device=w.device)
            layer.attn.v_cache = torch.zeros(shape, dtype=w.dtype, device=w.device)
        self.cache_len = max_seq_len

    def run_layers(self, x: torch.Tensor, pos: int, start: int = 0, end: int | None = None) -> torch.Tensor:
        """Run layers[start:end] on tokens at positions pos..pos+T-1 using/updating the KV cache.

        ``x`` is token ids [B, T] when ``start == 0`` and hidden states [B, T, dim] otherwise.
        Returns the hidden state after layer ``end - 1`` (pre final norm)."""
        end = self.config.n_layers if end is None else end
        h = self.embed(x) if start == 0 else x
        T = h.shape[1]
        if pos + T > self.cache_len:
            raise ValueError(f"KV cache too small: need {pos + T} positions, have {self.cache_len}")
        cos, sin = self.rope(pos, T, h.dtype, h.device)
        mask = None
        if T > 1:  # query i (position pos+i) may attend to keys 0..pos+i
            mask = torch.ones(T, pos + T, dtype=torch.bool, device=h.device).tril(diagonal=pos)
        layers = self.layers
        for i in range(start, end):
            h = layers[i](h, cos, sin, pos, mask)
        return h
