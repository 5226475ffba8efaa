"""Helpers for the LayerSkip tests: tiny random HF Llama models and matching checkpoints."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(1)

LLAMA2 = dict(vocab_size=101, hidden_size=64, intermediate_size=112, num_hidden_layers=4, num_attention_heads=4,
              max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=False)
LLAMA3 = dict(vocab_size=103, hidden_size=64, intermediate_size=96, num_hidden_layers=4, num_attention_heads=8,
              num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5, tie_word_embeddings=True,
              rope_theta=500000.0,
              rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                original_max_position_embeddings=16))


def hf_model(kind: dict, seed: int = 0, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(**{**kind, **overrides})
    return LlamaForCausalLM(cfg).eval()


def make_agreeing(model, scale: float = 1e-2, embed_scale: float = 30.0):
    """Scale the output projections of all layers but the first near zero so early exits agree with the
    last layer (high acceptance); larger embeddings make the logits peaked."""
    with torch.no_grad():
        for layer in model.layers[1:]:
            layer.attn.wo.weight.mul_(scale)
            layer.mlp.w2.weight.mul_(scale)
        model.tok_embeddings.weight.mul_(embed_scale)
    return model


@pytest.fixture(scope="session")
def ls():
    """The helpers above as a fixture (tests never ``import conftest``: several test folders have one)."""
    import types

    return types.SimpleNamespace(LLAMA2=LLAMA2, LLAMA3=LLAMA3, hf_model=hf_model, make_agreeing=make_agreeing)
