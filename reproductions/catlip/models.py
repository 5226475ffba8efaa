"""CatLIP (image encoder + one linear classifier) and a CLIP baseline on the same encoder.

Why:

* The paper's claim is a like-for-like comparison, so both methods share the
  exact image tower (torchvision's ViT, randomly initialised, head removed).
  corenet's ViT uses a 3-conv stem instead of a 16x16 patch conv; we keep
  torchvision's standard patchify and note the difference.
* CatLIP-B has 86M + 768 x 24,320 ~ 105M parameters (paper Table 2): the
  classifier is a plain ``Linear(width, vocab)`` with bias on the CLS feature.
* The CLIP text tower follows the usual CLIP recipe (causal transformer,
  features at the end-of-text token, linear projection, learnable temperature
  initialised to 1/0.07 and clamped at 100). Its tokenizer is byte-level so
  nothing is downloaded; ``vocab_size`` is configurable so the cost benchmark
  can use CLIP's 49,408-entry embedding table.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.vision_transformer import VisionTransformer

# name -> (image_size, patch, layers, heads, width, mlp)
VIT_CONFIGS = {
    "tiny": (64, 8, 4, 3, 192, 768),
    "small": (64, 8, 6, 6, 384, 1536),
    "vit_b_16": (224, 16, 12, 12, 768, 3072),
    "vit_l_16": (224, 16, 24, 16, 1024, 4096),
    "vit_h_16": (224, 16, 32, 16, 1280, 5120),
}

# name -> (context, layers, heads, width, embed_dim) ; CLIP ViT-B/16 text tower = 77/12/8/512/512.
# "tiny" is sized so that text/image forward FLOPs (0.16) match CLIP-B/16's (0.17): a
# measured tiny-scale CatLIP/CLIP ratio then speaks to the paper's B/16 setting.
TEXT_CONFIGS = {
    "tiny": (77, 2, 4, 96, 128),
    "vit_b_16": (77, 12, 8, 512, 512),
    "vit_l_16": (77, 12, 12, 768, 768),
    "vit_h_16": (77, 24, 16, 1024, 1024),
}


ENCODER_FORMAT = "catlip-encoder/1"
ENCODER_WEIGHTS = "model.safetensors"
ENCODER_CONFIG = "config.json"


STEMS = ("patch", "corenet-conv3")
POS_INTERP = ("grid-bicubic", "sequence-bilinear")


class EncoderConfigError(ValueError):
    pass


@dataclass(frozen=True)
class EncoderConfig:
    """What ``config.json`` of an encoder checkpoint holds: enough to rebuild the ViT without code changes.

    ``method`` says how the weights were obtained (``catlip``, ``clip``, ``random`` or ``corenet`` for a
    mapped release); ``mean``/``std`` are the input normalisation the weights were trained with
    (corenet feeds [0, 1] pixels: mean 0, std 1).
    """

    encoder: str
    image_size: int
    patch: int
    layers: int
    heads: int
    width: int
    mlp: int
    method: str = "random"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    stem: str = "patch"
    """``patch``: one p x p conv (torchvision); ``corenet-conv3``: corenet's 3-conv stem (k/s 4,2,2 + BN + GELU)."""
    pos_interp: str = "grid-bicubic"
    """How the positional embedding follows other input sizes: ``grid-bicubic`` (2-D, ours) or
    ``sequence-bilinear`` (corenet resizes the flattened sequence, which a mapped checkpoint must keep)."""
    extra: dict = field(default_factory=dict)

    @classmethod
    def preset(cls, name: str, image_size: int | None = None, method: str = "random", **extra) -> "EncoderConfig":
        if name not in VIT_CONFIGS:
            raise EncoderConfigError(f"unknown encoder preset {name!r} (known: {', '.join(VIT_CONFIGS)})")
        size, patch, layers, heads, width, mlp = VIT_CONFIGS[name]
        return cls(name, image_size or size, patch, layers, heads, width, mlp, method, extra=dict(extra))

    def to_json(self) -> dict:
        return {"format": ENCODER_FORMAT, "encoder": self.encoder, "image_size": self.image_size,
                "patch": self.patch, "layers": self.layers, "heads": self.heads, "width": self.width,
                "mlp": self.mlp, "method": self.method, "mean": list(self.mean), "std": list(self.std),
                "stem": self.stem, "pos_interp": self.pos_interp, "extra": self.extra}

    @classmethod
    def from_json(cls, d: dict, where: str = "config.json") -> "EncoderConfig":
        if not isinstance(d, dict):
            raise EncoderConfigError(f"{where}: expected a JSON object")
        if d.get("format") != ENCODER_FORMAT:
            raise EncoderConfigError(f"{where}: field 'format': expected {ENCODER_FORMAT!r}, got {d.get('format')!r}")
        for k in ("image_size", "patch", "layers", "heads", "width", "mlp"):
            if not isinstance(d.get(k), int) or isinstance(d.get(k), bool) or d[k] <= 0:
                raise EncoderConfigError(f"{where}: field {k!r}: expected a positive integer, got {d.get(k)!r}")
        if d["image_size"] % d["patch"] or d["width"] % d["heads"]:
            raise EncoderConfigError(f"{where}: field 'patch'/'heads': image_size must be a multiple of patch and "
                                     f"width a multiple of heads")
        for k in ("mean", "std"):
            v = d.get(k, [0.0, 0.0, 0.0] if k == "mean" else [1.0, 1.0, 1.0])
            if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, (int, float)) for x in v)):
                raise EncoderConfigError(f"{where}: field {k!r}: expected 3 numbers, got {v!r}")
        if d.get("stem", "patch") not in STEMS:
            raise EncoderConfigError(f"{where}: field 'stem': expected one of {STEMS}, got {d.get('stem')!r}")
        if d.get("pos_interp", "grid-bicubic") not in POS_INTERP:
            raise EncoderConfigError(f"{where}: field 'pos_interp': expected one of {POS_INTERP}, "
                                     f"got {d.get('pos_interp')!r}")
        return cls(str(d.get("encoder", "custom")), d["image_size"], d["patch"], d["layers"], d["heads"], d["width"],
                   d["mlp"], str(d.get("method", "random")), tuple(float(x) for x in d.get("mean", (0, 0, 0))),
                   tuple(float(x) for x in d.get("std", (1, 1, 1))), d.get("stem", "patch"),
                   d.get("pos_interp", "grid-bicubic"), dict(d.get("extra") or {}))


class ViTBackbone(VisionTransformer):
    """torchvision's ViT (same parameter names, so torchvision checkpoints load as is), extended with
    what transfer needs: all tokens, not just CLS, and inputs at any multiple of the patch size.

    Dense heads (detection, segmentation) run at other resolutions than pre-training, so the
    positional embedding of the patch grid is resized bicubically to the input's grid, as ViTDet
    and corenet do; the CLS position is kept as is.
    """

    def __init__(self, image_size: int, patch: int, layers: int, heads: int, width: int, mlp: int,
                 stem: str = "patch", pos_interp: str = "grid-bicubic"):
        super().__init__(image_size=image_size, patch_size=patch, num_layers=layers, num_heads=heads,
                         hidden_dim=width, mlp_dim=mlp)
        self.heads = nn.Identity()
        self.width = width
        self.pos_interp = pos_interp
        if stem == "corenet-conv3":
            self.conv_proj = corenet_stem(width, patch)

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    def _pos_embed(self, n_h: int, n_w: int) -> torch.Tensor:
        pos = self.encoder.pos_embedding
        if n_h == n_w == self.grid:
            return pos
        cls_pos, grid_pos = pos[:, :1], pos[:, 1:]
        if self.pos_interp == "sequence-bilinear":
            seq = F.interpolate(grid_pos.unsqueeze(0), size=(n_h * n_w, pos.shape[-1]), mode="bilinear",
                                align_corners=False)
            return torch.cat([cls_pos, seq[0]], dim=1)
        g = self.grid
        grid_pos = grid_pos.reshape(1, g, g, -1).permute(0, 3, 1, 2)
        grid_pos = F.interpolate(grid_pos, size=(n_h, n_w), mode="bicubic", align_corners=False)
        return torch.cat([cls_pos, grid_pos.permute(0, 2, 3, 1).reshape(1, n_h * n_w, -1)], dim=1)

    def tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1 + H/p * W/p, width): CLS first, then patch tokens in row-major order,
        after the final LayerNorm."""
        n, _, h, w = images.shape
        p = self.patch_size
        if h % p or w % p:
            raise ValueError(f"input {h}x{w} is not a multiple of the patch size {p}")
        x = self.conv_proj(images)
        n_h, n_w = x.shape[-2:]
        x = x.flatten(2).transpose(1, 2)
        x = torch.cat([self.class_token.expand(n, -1, -1), x], dim=1) + self._pos_embed(n_h, n_w)
        return self.encoder.ln(self.encoder.layers(self.encoder.dropout(x)))

    def feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, width, H/p, W/p): patch tokens as a map, for dense heads."""
        n, _, h, w = images.shape
        t = self.tokens(images)[:, 1:]
        return t.transpose(1, 2).reshape(n, self.width, h // self.patch_size, w // self.patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The CLS feature (B, width): what the classification heads and CLIP's projection read."""
        return self.tokens(images)[:, 0]


def build_image_encoder(name: str = "tiny", image_size: int | None = None) -> ViTBackbone:
    """A randomly initialised ViT backbone (no head); output is the final-LayerNorm CLS feature (B, width).

    For B/16 and L/16 at 224 px this is exactly torchvision's ``vit_b_16``/``vit_l_16`` architecture and
    parameter layout (H/16 is not a torchvision preset: it ships H/14; tiny/small are ours)."""
    return build_from_config(EncoderConfig.preset(name, image_size))


def build_from_config(cfg: EncoderConfig) -> ViTBackbone:
    return ViTBackbone(cfg.image_size, cfg.patch, cfg.layers, cfg.heads, cfg.width, cfg.mlp, cfg.stem,
                       cfg.pos_interp)


def corenet_stem(width: int, patch: int = 16) -> nn.Sequential:
    """corenet's ViT patch embedding: conv k4/s4 (padding 1) + BN + GELU, conv k2/s2 + BN + GELU, conv k2/s2 with
    bias; stride 16 in all. Only the layout is ours to choose (indices 0..6); the shapes are corenet's."""
    if patch != 16:
        raise EncoderConfigError(f"the corenet conv stem has stride 16, not {patch}")
    mid = max(32, width // 4)
    return nn.Sequential(nn.Conv2d(3, mid, 4, 4, padding=1, bias=False), nn.BatchNorm2d(mid), nn.GELU(),
                         nn.Conv2d(mid, mid, 2, 2, bias=False), nn.BatchNorm2d(mid), nn.GELU(),
                         nn.Conv2d(mid, width, 2, 2, bias=True))


def save_encoder(encoder: ViTBackbone, cfg: EncoderConfig, out_dir: str | Path,
                 extra_tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write ``model.safetensors`` (backbone only, torchvision key names) + ``config.json`` atomically.

    ``extra_tensors`` go to ``head.safetensors`` (e.g. CatLIP's pre-training classifier, for Transfer Init).
    """
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous().cpu() for k, v in encoder.state_dict().items()}
    tmp = out / (ENCODER_WEIGHTS + ".tmp")
    save_file(sd, str(tmp), metadata={"format": ENCODER_FORMAT, "method": cfg.method})
    tmp.replace(out / ENCODER_WEIGHTS)
    if extra_tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in extra_tensors.items()}, str(out / "head.safetensors.tmp"))
        (out / "head.safetensors.tmp").replace(out / "head.safetensors")
    (out / (ENCODER_CONFIG + ".tmp")).write_text(json.dumps(cfg.to_json(), indent=1, sort_keys=True) + "\n")
    (out / (ENCODER_CONFIG + ".tmp")).replace(out / ENCODER_CONFIG)
    return out


def read_encoder_config(ckpt_dir: str | Path) -> EncoderConfig:
    path = Path(ckpt_dir) / ENCODER_CONFIG
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise EncoderConfigError(f"{path}: not found (an encoder checkpoint is a folder with {ENCODER_CONFIG} and "
                                 f"{ENCODER_WEIGHTS})") from None
    except json.JSONDecodeError as e:
        raise EncoderConfigError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    return EncoderConfig.from_json(raw, str(path))


def load_encoder(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> ViTBackbone:
    """Load an encoder checkpoint folder (``config.json`` + ``model.safetensors``) as a :class:`ViTBackbone`
    in eval mode on ``device``.

    The returned module gives ``forward(x) -> (B, width)`` CLS features, ``tokens(x) -> (B, 1+N, width)``
    (CLS + patch tokens after the final LayerNorm), ``feature_map(x) -> (B, width, H/p, W/p)`` for dense heads
    (any input size that is a multiple of the patch; the positional embedding is resized). Attributes:
    ``width``, ``patch_size``, ``image_size`` (pre-training resolution) and ``config`` (the
    :class:`EncoderConfig`, including the input ``mean``/``std`` the weights expect). Weights load only through
    safetensors; a key mismatch fails naming the file and the keys.
    """
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    cfg = read_encoder_config(ckpt_dir)
    model = build_from_config(cfg)
    path = ckpt_dir / ENCODER_WEIGHTS
    if not path.is_file():
        raise EncoderConfigError(f"{path}: not found")
    sd = load_file(str(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(sd) & set(own) if sd[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        raise EncoderConfigError(f"{path}: weights do not fit {ENCODER_CONFIG} (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]}, wrong shape {wrong[:3]})")
    model.load_state_dict(sd)
    model.config = cfg
    return model.to(device).eval()


def load_pretraining_head(ckpt_dir: str | Path) -> nn.Linear | None:
    """CatLIP's pre-training classifier saved beside the encoder (None for CLIP / random encoders)."""
    from safetensors.torch import load_file

    path = Path(ckpt_dir) / "head.safetensors"
    if not path.is_file():
        return None
    sd = load_file(str(path))
    if set(sd) != {"weight", "bias"}:
        raise EncoderConfigError(f"{path}: expected tensors 'weight' and 'bias', got {sorted(sd)}")
    head = nn.Linear(sd["weight"].shape[1], sd["weight"].shape[0])
    head.load_state_dict(sd)
    return head


class CatLIP(nn.Module):
    def __init__(self, vocab_size: int, encoder: str = "tiny", image_size: int | None = None):
        super().__init__()
        self.image_encoder = build_image_encoder(encoder, image_size)
        self.classifier = nn.Linear(self.image_encoder.width, vocab_size)
        nn.init.trunc_normal_(self.classifier.weight, std=0.02)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.image_encoder(images))


class ByteTokenizer:
    """UTF-8 bytes + 3 specials. ids: 0 pad, 1 start, 2 end, 3+b byte b."""

    PAD, SOT, EOT = 0, 1, 2
    vocab_size = 259

    def __init__(self, context_length: int = 77):
        self.context_length = context_length

    def __call__(self, texts: list[str]) -> torch.Tensor:
        out = torch.zeros(len(texts), self.context_length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [b + 3 for b in t.lower().encode("utf-8")][: self.context_length - 2]
            ids = [self.SOT] + ids + [self.EOT]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


class TextTransformer(nn.Module):
    def __init__(self, vocab_size: int = ByteTokenizer.vocab_size, context: int = 77, layers: int = 4,
                 heads: int = 4, width: int = 128, embed_dim: int = 128):
        super().__init__()
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, width)
        self.positional_embedding = nn.Parameter(torch.randn(context, width) * 0.01)
        layer = nn.TransformerEncoderLayer(width, heads, 4 * width, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.ln_final = nn.LayerNorm(width)
        self.projection = nn.Linear(width, embed_dim, bias=False)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        self.register_buffer("causal_mask", torch.triu(torch.full((context, context), float("-inf")), 1),
                             persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        L = tokens.shape[1]
        x = self.token_embedding(tokens) + self.positional_embedding[:L]
        x = self.transformer(x, mask=self.causal_mask[:L, :L], is_causal=True)
        x = self.ln_final(x)
        eot = (tokens == ByteTokenizer.EOT).int().argmax(dim=1)  # first EOT position
        return self.projection(x[torch.arange(x.shape[0]), eot])


class CLIP(nn.Module):
    def __init__(self, encoder: str = "tiny", text: str | None = None, image_size: int | None = None,
                 text_vocab_size: int = ByteTokenizer.vocab_size):
        super().__init__()
        self.image_encoder = build_image_encoder(encoder, image_size)
        ctx, layers, heads, width, embed = TEXT_CONFIGS[text or ("tiny" if encoder in ("tiny", "small") else encoder)]
        self.text_encoder = TextTransformer(text_vocab_size, ctx, layers, heads, width, embed)
        self.image_projection = nn.Linear(self.image_encoder.width, embed, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.tokenizer = ByteTokenizer(ctx)

    def encode_image(self, images):
        return self.image_projection(self.image_encoder(images))

    def encode_text(self, tokens):
        return self.text_encoder(tokens)

    def forward(self, images, tokens):
        return self.encode_image(images), self.encode_text(tokens), self.logit_scale


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
