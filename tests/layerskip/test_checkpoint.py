"""Loading HF checkpoints (single file, sharded, hub cache) and writing ones transformers can read."""
import json

import pytest
import torch

from reproductions.layerskip.checkpoint import load_llama, resolve_checkpoint, save_llama
from reproductions.layerskip.model import LlamaConfig

IDS = torch.randint(0, 100, (1, 24), generator=torch.Generator().manual_seed(0))


@torch.no_grad()
def test_sharded_checkpoint(tmp_path, ls):
    ref = ls.hf_model(ls.LLAMA2, seed=3)
    ref.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    torch.testing.assert_close(load_llama(tmp_path)(IDS), ref(IDS).logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["LLAMA2", "LLAMA3"])
@torch.no_grad()
def test_save_roundtrip_with_transformers(tmp_path, kind, ls):
    from transformers import LlamaForCausalLM

    ref = ls.hf_model(getattr(ls, kind), seed=4)
    ref.save_pretrained(tmp_path / "hf")
    ours = load_llama(tmp_path / "hf")
    save_llama(ours, tmp_path / "ours")
    cfg = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert cfg["architectures"] == ["LlamaForCausalLM"] and cfg["model_type"] == "llama"
    back = LlamaForCausalLM.from_pretrained(tmp_path / "ours").eval()
    want = ref(IDS).logits
    torch.testing.assert_close(back(IDS).logits, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(load_llama(tmp_path / "ours")(IDS), want, atol=1e-5, rtol=1e-5)
    assert LlamaConfig.from_hf(cfg) == ours.config


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@torch.no_grad()
def test_low_precision_load(tmp_path, dtype, ls):
    ref = ls.hf_model(ls.LLAMA3, seed=5)
    ref.save_pretrained(tmp_path)
    m = load_llama(tmp_path, dtype=dtype)
    assert m.output.weight.dtype == dtype and m.output.weight is m.tok_embeddings.weight
    out = m(IDS).float()
    assert torch.isfinite(out).all()
    assert (out - ref(IDS).logits).abs().max() < 0.05


def test_hub_cache_resolution(tmp_path, monkeypatch, ls):
    ref = ls.hf_model(ls.LLAMA2, seed=6)
    snap = tmp_path / "hub" / "models--acme--tiny-llama" / "snapshots" / "abc123"
    ref.save_pretrained(snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_checkpoint("acme/tiny-llama") == snap
    with torch.no_grad():
        torch.testing.assert_close(load_llama("acme/tiny-llama")(IDS), ref(IDS).logits, atol=1e-5, rtol=1e-5)
    with pytest.raises(FileNotFoundError, match="acme/missing"):
        load_llama("acme/missing")


def test_missing_weights_message(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LlamaConfig(10, 8, 1, 2, 2, 16).to_hf()))
    with pytest.raises(FileNotFoundError, match="no weights"):
        load_llama(tmp_path)
