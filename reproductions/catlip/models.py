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

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

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


def build_image_encoder(name: str = "tiny", image_size: int | None = None) -> nn.Module:
    """torchvision ViT with weights=None and the head replaced by Identity;
    output is the final-LayerNorm CLS feature, shape (B, width)."""
    import torchvision.models as tvm
    from torchvision.models.vision_transformer import VisionTransformer
    size, patch, layers, heads, width, mlp = VIT_CONFIGS[name]
    size = image_size or size
    if name in ("vit_b_16", "vit_l_16") and size == 224:
        m = getattr(tvm, name)(weights=None)
    else:  # H/16 is not a torchvision preset (it ships H/14); tiny/small are ours
        m = VisionTransformer(image_size=size, patch_size=patch, num_layers=layers, num_heads=heads,
                              hidden_dim=width, mlp_dim=mlp)
    m.heads = nn.Identity()
    m.width = width
    return m


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
