"""Read and write Hugging Face Llama checkpoints (safetensors) for our ``Llama``.

Supports a local directory or an already-downloaded hub repo id (offline: resolved inside the hub
cache), single-file ``model.safetensors``, sharded ``model.safetensors.index.json`` and, as a
fallback, ``pytorch_model.bin`` read with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from suite.data import hf_cache_dirs

from .model import Llama, LlamaConfig

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
           "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}") from None


def resolve_checkpoint(path_or_repo_id: str | os.PathLike) -> Path:
    """A local directory holding config.json, or the snapshot of a repo id in the HF hub cache (offline)."""
    p = Path(path_or_repo_id).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise FileNotFoundError(f"checkpoint directory {p} has no config.json")
        return p
    name = str(path_or_repo_id)
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise FileNotFoundError(f"checkpoint {name!r} is neither a local directory nor an 'org/name' repo id")
    searched = []
    for cache in hf_cache_dirs("hub"):
        repo = cache / ("models--" + name.replace("/", "--"))
        searched.append(str(repo))
        snaps = repo / "snapshots"
        if not snaps.is_dir():
            continue
        ref = repo / "refs" / "main"
        if ref.is_file() and (snaps / ref.read_text().strip() / "config.json").is_file():
            return snaps / ref.read_text().strip()
        cands = sorted((s for s in snaps.iterdir() if (s / "config.json").is_file()), key=lambda s: s.stat().st_mtime)
        if cands:
            return cands[-1]
    raise FileNotFoundError(f"checkpoint {name!r} not found locally nor in the HF hub cache (searched {', '.join(searched)}); "
                            f"download it first, e.g. `huggingface-cli download {name}`")


def _hf_key_map(cfg: LlamaConfig):
    """HF key -> (our parameter name, row offset, row count) ; row count None = whole tensor."""
    H, KV, hd, inter = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.intermediate_size
    m = {"model.embed_tokens.weight": ("tok_embeddings.weight", 0, None), "model.norm.weight": ("norm.weight", 0, None)}
    if not cfg.tie_word_embeddings:
        m["lm_head.weight"] = ("output.weight", 0, None)
    for i in range(cfg.n_layers):
        a, b = f"model.layers.{i}.", f"layers.{i}."
        m[a + "input_layernorm.weight"] = (b + "attn_norm.weight", 0, None)
        m[a + "post_attention_layernorm.weight"] = (b + "mlp_norm.weight", 0, None)
        m[a + "self_attn.q_proj.weight"] = (b + "attn.wqkv.weight", 0, H * hd)
        m[a + "self_attn.k_proj.weight"] = (b + "attn.wqkv.weight", H * hd, KV * hd)
        m[a + "self_attn.v_proj.weight"] = (b + "attn.wqkv.weight", (H + KV) * hd, KV * hd)
        m[a + "self_attn.o_proj.weight"] = (b + "attn.wo.weight", 0, None)
        m[a + "mlp.gate_proj.weight"] = (b + "mlp.w13.weight", 0, inter)
        m[a + "mlp.up_proj.weight"] = (b + "mlp.w13.weight", inter, inter)
        m[a + "mlp.down_proj.weight"] = (b + "mlp.w2.weight", 0, None)
    return m


def _weight_files(d: Path) -> list[Path]:
    idx = d / "model.safetensors.index.json"
    if idx.is_file():
        names = sorted(set(json.loads(idx.read_text())["weight_map"].values()))
        return [d / n for n in names]
    for pat in ("model.safetensors", "*.safetensors", "pytorch_model.bin"):
        files = sorted(d.glob(pat))
        if files:
            return files
    raise FileNotFoundError(f"no weights in {d}: expected model.safetensors, model.safetensors.index.json "
                            f"or pytorch_model.bin")


def checkpoint_files(d: Path) -> list[Path]:
    """Files whose contents determine the model's outputs (config, weights, tokenizer)."""
    d = Path(d)
    extra = [d / n for n in ("config.json", "generation_config.json", "model.safetensors.index.json",
                             "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                             "tokenizer.model")]
    return [f for f in extra if f.is_file()] + _weight_files(d)


def _iter_tensors(f: Path):
    if f.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(f), framework="pt", device="cpu") as sf:
            for k in sf.keys():
                yield k, sf.get_tensor(k)
    else:
        import pickle

        try:
            state = torch.load(str(f), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:  # a pickle that would import or call code: never executed
            raise ValueError(f"{f}: refused: not a plain tensor file (weights_only loading rejected it: "
                             f"{str(e).splitlines()[0][:200]}); convert it to safetensors") from e
        yield from state.items()


@torch.no_grad()
def load_llama(path_or_repo_id, dtype: torch.dtype | str = torch.float32, device: str | torch.device = "cpu") -> Llama:
    d = resolve_checkpoint(path_or_repo_id)
    cfg = LlamaConfig.from_hf(json.loads((d / "config.json").read_text()))
    dtype = parse_dtype(dtype)
    with torch.device("meta"):
        model = Llama(cfg)
    model = model.to(dtype=dtype).to_empty(device=device)
    model.tie_weights()
    params = dict(model.named_parameters())
    keymap = _hf_key_map(cfg)
    missing = set(keymap)
    for f in _weight_files(d):
        for k, t in _iter_tensors(f):
            if k not in keymap:
                if k == "lm_head.weight" or k.endswith("rotary_emb.inv_freq"):
                    continue  # tied head stored anyway / non-weight buffer
                raise ValueError(f"{f}: unexpected tensor {k!r} (not a Llama weight for this config.json)")
            name, off, n = keymap[k]
            dst = params[name] if n is None else params[name][off:off + n]
            if dst.shape != t.shape:
                raise ValueError(f"{f}: tensor {k!r} has shape {tuple(t.shape)}, config.json implies "
                                 f"{tuple(dst.shape)}")
            dst.copy_(t)
            missing.discard(k)
    if missing:
        raise ValueError(f"{d}: checkpoint lacks {len(missing)} tensors, e.g. {sorted(missing)[:3]}")
    return model.eval()


@torch.no_grad()
def llama_state_dict_hf(model: Llama) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters(remove_duplicate=False))
    out = {}
    for k, (name, off, n) in _hf_key_map(model.config).items():
        t = params[name] if n is None else params[name][off:off + n]
        out[k] = t.detach().to("cpu").contiguous().clone()
    return out


def save_llama(model: Llama, out_dir) -> None:
    """Write config.json + model.safetensors with HF key names (loadable by us and by transformers)."""
    from safetensors.torch import save_file
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.config.to_hf()
    dt = model.output.weight.dtype
    cfg["torch_dtype"] = cfg["dtype"] = str(dt).removeprefix("torch.")
    (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    save_file(llama_state_dict_hf(model), str(out / "model.safetensors"), metadata={"format": "pt"})
