"""Classification transfer of a pre-trained ViT: linear probe and full fine-tuning, Transfer Init or random head.

What the paper fixes (arXiv 2404.15653 v1, Section 4.2 and Appendix Table 7) and what we choose:

* linear probe (LP): frozen encoder, a linear classifier on the CLS feature (Table 7a: 30 epochs, AdamW,
  cosine 3e-5 -> 1e-6, no weight decay). Our choice: features are computed once per encoder with the
  evaluation transform and cached (no augmentation), so a probe costs seconds; the learning rate is a
  profile setting because 3e-5 was tuned for ViT-B on 1.28M images, not for a tiny ViT on 4,000;
* full fine-tuning (FT): every weight trained (Table 7b: 10 epochs, cosine 3e-5 -> 3e-6, weight decay
  0.05, cross-entropy with label smoothing 0.1, random resized crop + flip), classifier randomly
  initialised as in corenet's configs;
* head initialisation: ``random`` (trunc-normal, std 0.02, zero bias) or ``transfer`` (Transfer Init,
  Section 4.2: rows copied from CatLIP's pre-training classifier through WordNet, ``transfer_init.py``).

A trained classifier is a folder: ``classifier.json`` (what the ``catlip-classifier`` system needs: output ->
task class, input size and normalisation, which encoder), ``classifier.safetensors`` (the head) and, for FT,
``encoder/`` (the fine-tuned backbone, the format of ``models.load_encoder``). A probe points at the frozen
encoder folder by a relative path instead of copying it.

Data parallel: under ``torchrun`` every rank takes its slice of each global batch (FT) or of the images to
encode (LP features, gathered before the probe is fitted identically on every rank); only rank 0 writes.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .models import ViTBackbone, load_encoder, load_pretraining_head, read_encoder_config, save_encoder
from .transfer_data import ClassificationData

CLASSIFIER_FORMAT = "catlip-classifier/1"
CLASSIFIER_JSON = "classifier.json"
CLASSIFIER_WEIGHTS = "classifier.safetensors"


@dataclass(frozen=True)
class ProbeConfig:
    epochs: int = 30
    batch_size: int = 256
    lr: float = 3e-5
    min_lr: float = 1e-6
    weight_decay: float = 0.0
    seed: int = 0


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 3e-5
    min_lr: float = 3e-6
    weight_decay: float = 0.05
    warmup_steps: int = 500
    label_smoothing: float = 0.1
    crop_scale_min: float = 0.08
    seed: int = 0
    grad_clip: float = 1.0


@dataclass(frozen=True)
class EvalProtocol:
    """Shorter side ``resize``, center crop ``crop``: how features are computed for the probe and how the
    ``imagenet`` task asks for images at this profile (the spec's task args say the same)."""

    resize: int
    crop: int


@dataclass
class TrainResult:
    head: nn.Linear
    losses: list[float] = field(default_factory=list)
    n_train: int = 0
    wall_s: float = 0.0
    coverage: dict | None = None


# ----------------------------------------------------------------------------- distributed helpers


def _world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _init_distributed(device: str) -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return _world()


# ----------------------------------------------------------------------------- images


class ImageCache:
    """Decoded images kept in memory (small data sets only), so epochs after the first skip JPEG decoding."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._imgs: dict[str, object] = {}

    def get(self, path: Path):
        from suite.vision.images import open_rgb

        key = str(path)
        img = self._imgs.get(key)
        if img is None:
            img = open_rgb(Path(path))
            if self.enabled:
                self._imgs[key] = img
        return img


def _eval_tf(proto: EvalProtocol, mean, std):
    from suite.vision.images import classification_transform

    return classification_transform(proto.resize, proto.crop, mean, std)


def _train_tf(resolution: int, scale_min: float, mean, std):
    from torchvision import transforms as T

    return T.Compose([T.RandomResizedCrop(resolution, scale=(scale_min, 1.0),
                                          interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                      T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])


@torch.no_grad()
def encode(encoder: ViTBackbone, files: Sequence[Path], proto: EvalProtocol, *, batch_size: int = 128,
           device: str = "cpu", cache: ImageCache | None = None) -> torch.Tensor:
    """CLS features (N, width) of ``files`` under the evaluation transform; sharded over torchrun ranks."""
    rank, world = _world()
    cfg = encoder.config
    tf = _eval_tf(proto, cfg.mean, cfg.std)
    cache = cache or ImageCache(False)
    mine = list(range(rank, len(files), world))
    feats = torch.zeros(len(files), encoder.width)
    encoder.eval()
    for i in range(0, len(mine), batch_size):
        idx = mine[i:i + batch_size]
        x = torch.stack([tf(cache.get(files[j])) for j in idx]).to(device)
        feats[idx] = encoder(x).float().cpu()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(feats)  # every row was filled by exactly one rank
    return feats


# ----------------------------------------------------------------------------- heads


def random_head(width: int, num_classes: int, seed: int = 0) -> nn.Linear:
    """The initialisation Transfer Init gives unmatched rows (trunc-normal, std 0.02, zero bias)."""
    g = torch.Generator().manual_seed(seed)
    head = nn.Linear(width, num_classes)
    with torch.no_grad():
        head.weight.copy_(torch.randn(num_classes, width, generator=g).mul_(0.02).clamp_(-0.04, 0.04))
        head.bias.zero_()
    return head


def transfer_init_head(encoder_dir: Path, data: ClassificationData, alpha: float, seed: int = 0,
                       transfer_bias: bool = False) -> tuple[nn.Linear, dict]:
    """Transfer Init (Section 4.2): rows of CatLIP's pre-training classifier mapped onto the task's labels.

    The paper does not say whether biases move with the rows. Ours stay zero by default: a BCE bias is the
    log-odds of a synset appearing in a caption (very negative for rare ones), which in a softmax over the new
    classes would only handicap the matched classes against the unmatched ones."""
    from . import transfer_init as T
    from .vocab import load_vocab

    pre = load_pretraining_head(encoder_dir)
    vocab_path = Path(encoder_dir) / "vocab.json"
    if pre is None or not vocab_path.is_file():
        raise ValueError(f"{encoder_dir}: Transfer Init needs a CatLIP encoder with head.safetensors and vocab.json")
    vocab = load_vocab(vocab_path)
    if len(vocab) != pre.out_features:
        raise ValueError(f"{vocab_path}: {len(vocab)} synsets but the classifier has {pre.out_features} rows")
    cov = T.match_labels(list(data.label_names), vocab.offsets, alpha=alpha)
    head = T.transfer_init(pre, cov, transfer_bias=transfer_bias, seed=seed)
    return head, cov.summary()


def _cosine(step: int, total: int, lr: float, min_lr: float, warmup: int = 0) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * min(1.0, t)))


def fit_probe(features: torch.Tensor, labels: torch.Tensor, head: nn.Linear, cfg: ProbeConfig) -> TrainResult:
    """AdamW on a linear head over fixed features; seeded shuffling, so every rank fits the same head."""
    t0 = time.perf_counter()
    g = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n = features.shape[0]
    steps_per_epoch = max(1, math.ceil(n / cfg.batch_size))
    total = cfg.epochs * steps_per_epoch
    losses, step = [], 0
    for _ in range(cfg.epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            for grp in opt.param_groups:
                grp["lr"] = _cosine(step, total, cfg.lr, cfg.min_lr)
            loss = F.cross_entropy(head(features[idx]), labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
    return TrainResult(head, losses, n, time.perf_counter() - t0)


def finetune(encoder: ViTBackbone, head: nn.Linear, data: ClassificationData, cfg: FinetuneConfig, *,
             device: str = "cpu", cache: ImageCache | None = None,
             log: Callable[[str], None] | None = None) -> TrainResult:
    """Every weight trained with CE + label smoothing, AdamW, warm-up + cosine, grad clip; data parallel under
    torchrun (each rank its slice of the seeded global batch)."""
    from suite.devices import autocast_dtype

    rank, world = _init_distributed(device)
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = nn.Sequential(encoder, head).to(device).train()
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None)
    from .train import param_groups

    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.999))
    tf = _train_tf(encoder.config.image_size, cfg.crop_scale_min, encoder.config.mean, encoder.config.std)
    cache = cache or ImageCache(False)
    n = len(data.items)
    if cfg.batch_size % world:
        raise ValueError(f"fine-tuning batch {cfg.batch_size} is not divisible by {world} processes")
    steps_per_epoch = max(1, n // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    amp = autocast_dtype(device)
    g = torch.Generator().manual_seed(cfg.seed)
    losses, step = [], 0
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=g).tolist()
        for s in range(steps_per_epoch):
            batch = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size][rank::world]
            x, y = [], []
            for j in batch:
                path, label = data.items[j]
                torch.manual_seed((cfg.seed * 1_000_003 + step) * 1_000_033 + j)  # same crop whatever the world size
                x.append(tf(cache.get(path)))
                y.append(label)
            x, y = torch.stack(x).to(device), torch.tensor(y, device=device)
            for grp in opt.param_groups:
                grp["lr"] = _cosine(step, total, cfg.lr, cfg.min_lr, min(cfg.warmup_steps, total // 10))
            with torch.autocast(torch.device(device).type, dtype=amp or torch.float32, enabled=amp is not None):
                loss = F.cross_entropy(net(x).float(), y, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            losses.append(float(loss.detach()))
            step += 1
        if log and rank == 0:
            log(f"fine-tune epoch {epoch + 1}/{cfg.epochs}: loss {sum(losses[-steps_per_epoch:]) / steps_per_epoch:.4f}")
    model.eval()
    return TrainResult(head, losses, n, time.perf_counter() - t0)


# ----------------------------------------------------------------------------- checkpoints


def save_classifier(out_dir: Path, head: nn.Linear, data: ClassificationData, proto: EvalProtocol, *,
                    mode: str, head_init: str, encoder_dir: Path | None = None, encoder: ViTBackbone | None = None,
                    meta: dict | None = None) -> Path:
    """Write a classifier folder; ``encoder_dir`` (probe: reference the frozen encoder) or ``encoder`` (FT:
    saved inside as ``encoder/``)."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if encoder is not None:
        save_encoder(encoder, encoder.config, out / "encoder")
        enc_ref = "encoder"
    elif encoder_dir is not None:
        enc_ref = os.path.relpath(Path(encoder_dir).resolve(), out.resolve())
    else:
        raise ValueError("save_classifier needs encoder_dir or encoder")
    save_file({"weight": head.weight.detach().contiguous().cpu(), "bias": head.bias.detach().contiguous().cpu()},
              str(out / (CLASSIFIER_WEIGHTS + ".tmp")))
    (out / (CLASSIFIER_WEIGHTS + ".tmp")).replace(out / CLASSIFIER_WEIGHTS)
    doc = {"format": CLASSIFIER_FORMAT, "encoder": enc_ref, "mode": mode, "head_init": head_init,
           "num_classes": data.num_classes, "task_index": list(data.task_index),
           "label_names": list(data.label_names), "eval": asdict(proto), "meta": meta or {}}
    (out / (CLASSIFIER_JSON + ".tmp")).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    (out / (CLASSIFIER_JSON + ".tmp")).replace(out / CLASSIFIER_JSON)
    return out


@dataclass
class LoadedClassifier:
    encoder: ViTBackbone
    head: nn.Linear
    task_index: list[int]
    doc: dict
    files: list[Path]
    """Weight files whose bytes define the model (for the system's identity)."""


def load_classifier(ckpt_dir: Path, device: str = "cpu") -> LoadedClassifier:
    from safetensors.torch import load_file

    ckpt_dir = Path(ckpt_dir)
    path = ckpt_dir / CLASSIFIER_JSON
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: not found (a CatLIP classifier folder has {CLASSIFIER_JSON} and "
                                f"{CLASSIFIER_WEIGHTS})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if doc.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path}: field 'format': expected {CLASSIFIER_FORMAT!r}, got {doc.get('format')!r}")
    for key in ("encoder", "task_index", "num_classes"):
        if key not in doc:
            raise ValueError(f"{path}: field {key!r} is missing")
    if len(doc["task_index"]) != doc["num_classes"]:
        raise ValueError(f"{path}: field 'task_index' has {len(doc['task_index'])} entries for "
                         f"{doc['num_classes']} classes")
    enc_dir = (ckpt_dir / doc["encoder"]).resolve()
    encoder = load_encoder(enc_dir, device)
    sd = load_file(str(ckpt_dir / CLASSIFIER_WEIGHTS))
    if sd.get("weight") is None or tuple(sd["weight"].shape) != (doc["num_classes"], encoder.width):
        raise ValueError(f"{ckpt_dir / CLASSIFIER_WEIGHTS}: head weight must be ({doc['num_classes']}, "
                         f"{encoder.width})")
    head = nn.Linear(encoder.width, doc["num_classes"])
    head.load_state_dict(sd)
    return LoadedClassifier(encoder, head.to(device).eval(), [int(i) for i in doc["task_index"]], doc,
                            [enc_dir / "model.safetensors", enc_dir / "config.json", ckpt_dir / CLASSIFIER_WEIGHTS,
                             path])


def encoder_width(encoder_dir: Path) -> int:
    return read_encoder_config(encoder_dir).width
