"""corenet checkpoint mapping: a fixture written in corenet's key layout, run by an independent re-statement of
corenet's ViT forward, must give the same features as our mapped ViTBackbone."""
import pytest
import torch
import torch.nn.functional as F

from reproductions.catlip import corenet as C
from reproductions.catlip import models as M

WIDTH, LAYERS, HEADS = 768, 12, 12  # corenet's ViT-B (the smallest preset it ships)


def _corenet_state_dict(seed: int = 0, flash: bool = True) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)

    def r(*shape, s=0.02):
        return torch.randn(*shape, generator=g) * s

    mid = max(32, WIDTH // 4)
    sd = {"cls_token": r(1, 1, WIDTH), "pos_embed.pos_embed.pos_embed": r(1, 1, 196, WIDTH),
          "patch_emb.0.block.conv.weight": r(mid, 3, 4, 4, s=0.2), "patch_emb.1.block.conv.weight": r(mid, mid, 2, 2, s=0.1),
          "patch_emb.2.block.conv.weight": r(WIDTH, mid, 2, 2, s=0.1), "patch_emb.2.block.conv.bias": r(WIDTH),
          "post_transformer_norm.weight": 1 + r(WIDTH), "post_transformer_norm.bias": r(WIDTH),
          "classifier.weight": r(10, WIDTH), "classifier.bias": r(10),
          "neural_augmentor.brightness._low": torch.tensor(0.1)}
    for i in (0, 1):
        sd.update({f"patch_emb.{i}.block.norm.weight": 1 + r(mid), f"patch_emb.{i}.block.norm.bias": r(mid),
                   f"patch_emb.{i}.block.norm.running_mean": r(mid), f"patch_emb.{i}.block.norm.running_var": 1 + r(mid).abs(),
                   f"patch_emb.{i}.block.norm.num_batches_tracked": torch.tensor(7)})
    out = "out_proj_attn" if flash else "out_proj"
    for i in range(LAYERS):
        p = f"transformer.{i}."
        sd.update({p + "pre_norm_mha.0.weight": 1 + r(WIDTH), p + "pre_norm_mha.0.bias": r(WIDTH),
                   p + "pre_norm_mha.1.qkv_proj.weight": r(3 * WIDTH, WIDTH), p + "pre_norm_mha.1.qkv_proj.bias": r(3 * WIDTH),
                   p + f"pre_norm_mha.1.{out}.weight": r(WIDTH, WIDTH), p + f"pre_norm_mha.1.{out}.bias": r(WIDTH),
                   p + "pre_norm_ffn.0.weight": 1 + r(WIDTH), p + "pre_norm_ffn.0.bias": r(WIDTH),
                   p + "pre_norm_ffn.1.weight": r(4 * WIDTH, WIDTH), p + "pre_norm_ffn.1.bias": r(4 * WIDTH),
                   p + "pre_norm_ffn.4.weight": r(WIDTH, 4 * WIDTH), p + "pre_norm_ffn.4.bias": r(WIDTH)})
    return sd


def _corenet_forward(sd, x, flash=True):
    """What corenet's ViT computes, written from its description (not its code): conv stem, positions added to
    patches only, CLS prepended, pre-norm blocks with a fused (3, heads, head_dim) qkv, final LayerNorm."""
    def bn(h, i):
        p = f"patch_emb.{i}.block.norm."
        return F.batch_norm(h, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"], sd[p + "bias"], False,
                            0.0, 1e-5)

    h = F.gelu(bn(F.conv2d(x, sd["patch_emb.0.block.conv.weight"], stride=4, padding=1), 0))
    h = F.gelu(bn(F.conv2d(h, sd["patch_emb.1.block.conv.weight"], stride=2), 1))
    h = F.conv2d(h, sd["patch_emb.2.block.conv.weight"], sd["patch_emb.2.block.conv.bias"], stride=2)
    b, d, nh, nw = h.shape
    t = h.flatten(2).transpose(1, 2)
    pos = sd["pos_embed.pos_embed.pos_embed"]
    if nh * nw != pos.shape[2]:
        pos = F.interpolate(pos, size=(nh * nw, d), mode="bilinear")
    t = torch.cat([sd["cls_token"].expand(b, -1, -1), t + pos.reshape(1, nh * nw, d)], dim=1)
    out = "out_proj_attn" if flash else "out_proj"
    for i in range(LAYERS):
        p = f"transformer.{i}."
        y = F.layer_norm(t, (d,), sd[p + "pre_norm_mha.0.weight"], sd[p + "pre_norm_mha.0.bias"], 1e-6)
        qkv = F.linear(y, sd[p + "pre_norm_mha.1.qkv_proj.weight"], sd[p + "pre_norm_mha.1.qkv_proj.bias"])
        qkv = qkv.reshape(b, -1, 3, HEADS, d // HEADS).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, -1, d)
        t = t + F.linear(a, sd[p + f"pre_norm_mha.1.{out}.weight"], sd[p + f"pre_norm_mha.1.{out}.bias"])
        y = F.layer_norm(t, (d,), sd[p + "pre_norm_ffn.0.weight"], sd[p + "pre_norm_ffn.0.bias"], 1e-6)
        y = F.linear(F.gelu(F.linear(y, sd[p + "pre_norm_ffn.1.weight"], sd[p + "pre_norm_ffn.1.bias"])),
                     sd[p + "pre_norm_ffn.4.weight"], sd[p + "pre_norm_ffn.4.bias"])
        t = t + y
    return F.layer_norm(t, (d,), sd["post_transformer_norm.weight"], sd["post_transformer_norm.bias"], 1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("flash", [True, False])
def test_mapped_checkpoint_computes_what_corenet_computes(tmp_path, flash):
    sd = _corenet_state_dict(flash=flash)
    torch.save(sd, tmp_path / "vit_base.pt")
    enc_dir, head = C.convert(tmp_path / "vit_base.pt", tmp_path / "enc")
    enc = M.load_encoder(enc_dir)
    assert enc.config.stem == "corenet-conv3" and enc.config.mean == (0.0, 0.0, 0.0) and enc.config.layers == 12
    assert torch.equal(head["weight"], sd["classifier.weight"])
    torch.manual_seed(0)
    for size in (224, 256):  # 256: corenet resizes the flattened position sequence; the mapped config must too
        x = torch.rand(2, 3, size, size)
        with torch.no_grad():
            ref = _corenet_forward(sd, x, flash)
            ours = enc.tokens(x)
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-4), (size, (ours - ref).abs().max())


def test_key_mapping_and_errors():
    sd = _corenet_state_dict()
    mapped = C.map_state_dict(sd)
    assert mapped.config.width == 768 and mapped.config.heads == 12 and mapped.config.image_size == 224
    assert mapped.encoder["encoder.pos_embedding"].shape == (1, 197, 768)
    assert torch.equal(mapped.encoder["encoder.pos_embedding"][0, 0], torch.zeros(768))  # no position on CLS
    assert torch.equal(mapped.encoder["encoder.layers.encoder_layer_11.mlp.3.weight"],
                       sd["transformer.11.pre_norm_ffn.4.weight"])
    assert not any(k.startswith("neural_augmentor") for k in mapped.encoder)
    bad = dict(sd, **{"transformer.0.unexpected.weight": torch.zeros(1)})
    with pytest.raises(C.CorenetCheckpointError, match="unexpected key"):
        C.map_state_dict(bad, "x.pt")
    short = {k: v for k, v in sd.items() if not k.startswith("transformer.11.")}
    with pytest.raises(C.CorenetCheckpointError, match="11 transformer blocks"):
        C.map_state_dict(short, "x.pt")


def test_pickled_code_is_refused(tmp_path):
    import argparse

    torch.save({"model": argparse.Namespace(a=1)}, tmp_path / "evil.pt")  # an object, not weights
    with pytest.raises(C.CorenetCheckpointError, match="weights only"):
        C.read_state_dict(tmp_path / "evil.pt")
