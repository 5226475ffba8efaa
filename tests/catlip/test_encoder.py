"""The encoder checkpoint format every CatLIP transfer model builds on (``models.load_encoder``)."""
import json

import pytest
import torch

from reproductions.catlip import models as M


def _tiny_cfg(**kw):
    return M.EncoderConfig("test", 32, 8, 2, 2, 32, 64, method="catlip", **kw)


def test_save_load_roundtrip_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    cfg = _tiny_cfg()
    enc = M.build_from_config(cfg).eval()
    head = torch.nn.Linear(32, 5)
    M.save_encoder(enc, cfg, tmp_path / "enc", extra_tensors={"weight": head.weight, "bias": head.bias})
    back = M.load_encoder(tmp_path / "enc", "cpu")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(enc(x), back(x))
        t = back.tokens(x)
    assert t.shape == (2, 1 + 16, 32) and torch.allclose(t[:, 0], back(x).detach(), atol=1e-5)
    assert back.config == cfg and not back.training
    h = M.load_pretraining_head(tmp_path / "enc")
    assert torch.equal(h.weight, head.weight) and torch.equal(h.bias, head.bias)


@pytest.mark.parametrize("interp", M.POS_INTERP)
def test_other_resolutions_resize_the_positional_embedding(tmp_path, interp):
    torch.manual_seed(0)
    enc = M.build_from_config(_tiny_cfg(pos_interp=interp)).eval()
    with torch.no_grad():
        fm = enc.feature_map(torch.randn(1, 3, 48, 64))
        assert fm.shape == (1, 32, 6, 8)
        # at the native size nothing is resized: the embedding is used as stored
        assert torch.equal(enc._pos_embed(4, 4), enc.encoder.pos_embedding)


def test_bad_config_fails_naming_file_and_field(tmp_path):
    d = tmp_path / "enc"
    M.save_encoder(M.build_from_config(_tiny_cfg()), _tiny_cfg(), d)
    raw = json.loads((d / "config.json").read_text())
    raw["width"] = "wide"
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(M.EncoderConfigError, match=r"config.json: field 'width'"):
        M.load_encoder(d)
    raw["width"] = 64  # valid field, wrong for the weights
    (d / "config.json").write_text(json.dumps(raw))
    with pytest.raises(M.EncoderConfigError, match="do not fit"):
        M.load_encoder(d)


def test_presets_match_torchvision_parameter_layout():
    from torchvision.models import vit_b_16

    ours = M.build_image_encoder("vit_b_16").state_dict()
    ref = {k: v for k, v in vit_b_16(weights=None).state_dict().items() if not k.startswith("heads")}
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in ref.items()}
