"""The paper profile: corenet's released CatLIP checkpoints and the full data sets, from local paths.

Nothing is downloaded. Checkpoints are read from ``$REPRO_CATLIP_CHECKPOINTS`` (default
``<data root>/catlip/corenet``), laid out as corenet's release URLs after ``.../corenet/v0.1.0/catlip/``::

    pretrained_models/vit_{base,large,huge}.pt                    CatLIP pre-trained (24,320-synset head)
    pretraining_vocab/datacomp_1_2B_vocab.pkl                      the synset vocabulary (for Transfer Init)
    image-classification/imagenet-1k/vit_{base,large,huge}[_512x512].pt
    image-classification/places365/vit_{base,large,huge}[_512x512].pt

Data under the data root: ``imagenet/train/<wnid>/`` (ImageFolder, for the probes), ``imagenet/val`` (the
imagenet task's official validation layout), ``places365/`` (official lists, ``data_256/``, ``val_256/``),
and caption dumps ``catlip/captions/{datacomp,cc3m}.{jsonl,tsv,txt}`` for the vocabulary statistics.

What each step makes (artifact aliases read by the table specs):

* ``catlip-enc-{b16,l16,h16}``: pre-trained encoders (+ head and vocabulary when the vocabulary file is there);
* ``catlip-{in1k,places}-ft-{b16,l16,h16}[-512]``: released fine-tuned classifiers;
* ``catlip-lp-{in1k,places}-b16``: linear probes trained here on cached features (Table 1's LP columns);
* ``catlip-vocab-{datacomp,cc3m}``: vocabulary statistics of the captions (Figures 2-3);
* the dense engineer's Table 3-5 models, from ``dense.prepare_dense`` on the pre-trained encoders.

A step whose inputs are missing is skipped with one line; ``repro reproduce catlip --profile paper --dry-run``
lists all of them at once (``plan.py``).
"""
from __future__ import annotations

import os
import pickle
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from suite.papers import PrepareContext

SIZES = {"b16": "base", "l16": "large", "h16": "huge"}
PRETRAINED = "pretrained_models/vit_{size}.pt"
VOCAB_PKL = "pretraining_vocab/datacomp_1_2B_vocab.pkl"
FINETUNED = {"in1k": "image-classification/imagenet-1k/vit_{size}{res}.pt",
             "places": "image-classification/places365/vit_{size}{res}.pt"}
RELEASE_URL = "https://docs-assets.developer.apple.com/ml-research/models/corenet/v0.1.0/catlip/"
CAPTIONS = {"datacomp": "catlip/captions/datacomp", "cc3m": "catlip/captions/cc3m"}
CAPTION_SUFFIXES = (".jsonl", ".tsv", ".txt")
IMAGENET_TRAIN = "imagenet/train"
PLACES = "places365"
VOCAB_SIZE = 24320


def checkpoint_root(data_root: Path | None) -> Path | None:
    env = os.environ.get("REPRO_CATLIP_CHECKPOINTS")
    if env:
        return Path(env).expanduser()
    return Path(data_root) / "catlip" / "corenet" if data_root else None


@dataclass(frozen=True)
class Release:
    alias: str
    relpath: str
    kind: str
    """``encoder`` (pre-trained) or ``in1k`` / ``places`` (fine-tuned classifier)."""
    resolution: int = 224


def releases() -> list[Release]:
    out = [Release(f"catlip-enc-{s}", PRETRAINED.format(size=n), "encoder") for s, n in SIZES.items()]
    for task, pattern in FINETUNED.items():
        for s, n in SIZES.items():
            out.append(Release(f"catlip-{task}-ft-{s}", pattern.format(size=n, res=""), task))
            out.append(Release(f"catlip-{task}-ft-{s}-512", pattern.format(size=n, res="_512x512"), task, 512))
    return out


def caption_file(data_root: Path | None, name: str) -> Path | None:
    if data_root is None:
        return None
    base = Path(data_root) / CAPTIONS[name]
    return next((base.with_suffix(s) for s in CAPTION_SUFFIXES if base.with_suffix(s).is_file()), None)


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):  # a vocabulary is a dict of str -> int: no code may run
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a vocabulary pickle")


def read_corenet_vocab(path: Path, size: int = VOCAB_SIZE) -> list[int]:
    """The first ``size`` synsets of corenet's count-sorted vocabulary pickle (``{"n5928118": count}``, offsets
    not zero-padded), as WordNet offsets; loaded with an unpickler that refuses every class."""
    with open(path, "rb") as f:
        try:
            d = _NoGlobals(f).load()
        except pickle.UnpicklingError as e:
            raise ValueError(f"{path}: not a plain vocabulary pickle ({e})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a dict synset id -> count")
    offsets = []
    for key in list(d)[:size]:
        if not (isinstance(key, str) and key[:1] == "n" and key[1:].isdigit()):
            raise ValueError(f"{path}: key {key!r} is not a corenet noun synset id (n<offset>)")
        offsets.append(int(key[1:]))
    return offsets


def _release_step(rel: Release, src: Path, artifacts: Path, vocab: list[int] | None) -> Path:
    from safetensors.torch import save_file

    from .corenet import convert
    from .models import load_encoder
    from .transfer import EvalProtocol, save_classifier
    from .transfer_data import ClassificationData
    from .vocab import Vocab

    out = artifacts / rel.alias
    if rel.kind == "encoder":
        enc_dir, head = convert(src, out, rel.alias)
        if head is not None:
            save_file({k: v.contiguous() for k, v in head.items()}, str(enc_dir / "head.safetensors"))
            if vocab is not None and len(vocab) == head["weight"].shape[0]:
                Vocab(offsets=vocab, counts=[0] * len(vocab), v_tau=500, n_captions=0,
                      meta={"source": "corenet datacomp_1_2B_vocab.pkl"}).save(enc_dir / "vocab.json")
        return enc_dir
    enc_dir, head = convert(src, out / "encoder", rel.alias)
    if head is None:
        raise ValueError(f"{src}: a fine-tuned checkpoint without a classifier")
    import torch

    n = head["weight"].shape[0]
    linear = torch.nn.Linear(head["weight"].shape[1], n)
    linear.load_state_dict(head)
    data = ClassificationData((), tuple(str(i) for i in range(n)), tuple(range(n)), str(src))
    proto = EvalProtocol(resize=232, crop=224) if rel.resolution == 224 else EvalProtocol(512, 512)
    save_classifier(out, linear, data, proto, mode="finetune", head_init="released", encoder=load_encoder(enc_dir),
                    meta={"source": rel.relpath, "release": RELEASE_URL + rel.relpath})
    return out


def _probe_step(enc_dir: Path, data_layout: str, root: Path, meta: Path | None, out: Path, device: str,
                log: Callable[[str], None]) -> Path:
    import torch

    from .models import load_encoder
    from .transfer import EvalProtocol, ProbeConfig, encode, fit_probe, random_head, save_classifier
    from .transfer_data import load

    data = load(data_layout, root, "train", meta)
    enc = load_encoder(enc_dir, device)
    proto = EvalProtocol(232, 224)
    log(f"[catlip] encoding {len(data.items)} training images with {enc_dir.name} ...")
    feats = encode(enc, data.files(), proto, batch_size=256, device=device)
    labels = torch.tensor([y for _, y in data.items])
    cfg = ProbeConfig()  # Table 7a: 30 epochs, 3e-5 -> 1e-6, no weight decay, batch 256
    res = fit_probe(feats.to(device), labels.to(device), random_head(enc.width, data.num_classes).to(device), cfg)
    return save_classifier(out, res.head, data, proto, mode="linear-probe", head_init="random", encoder_dir=enc_dir,
                           meta={"probe": asdict(cfg), "train_images": len(data.items)})


def _probe_record(ckpt: Path) -> tuple[dict, int, list[Path]]:
    import json

    meta = json.loads((ckpt / "classifier.json").read_text())["meta"]
    return {"train_images": meta["train_images"]}, meta["train_images"], []


def _vocab_stats_step(path: Path, meta: Path | None, out: Path) -> tuple[dict, int, list[Path]]:
    import json

    from . import transfer_init as T
    from . import vocab_stats as VS
    from .labels import LabelExtractor

    if path.suffix == ".txt":
        caps = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        from .data import read_manifest

        caps = [p.caption for p in read_manifest(path)]
    ex = LabelExtractor()
    stats = VS.compute([ex(c) for c in caps], 500, T.imagenet_labels(meta.parent) if meta else None,
                       vtaus=sorted({5, 10, 25, 50, *VS.PAPER_VTAUS}))
    (out / "vocab_stats.json").write_text(json.dumps(stats.arrays()))
    return stats.metrics(), len(caps), [path]


def prepare_paper(ctx: PrepareContext, log: Callable[[str], None] = lambda m: print(m, flush=True)) -> dict[str, Path]:
    from .pipeline import Stages, code_hash, stage_key

    root = ctx.data_root
    ck = checkpoint_root(root)
    artifacts = ctx.artifacts_dir
    out: dict[str, Path] = {}
    vocab = None
    if ck and (ck / VOCAB_PKL).is_file():
        vocab = read_corenet_vocab(ck / VOCAB_PKL)
    for rel in releases():
        src = ck / rel.relpath if ck else None
        if src is None or not src.is_file():
            log(f"[catlip] skip {rel.alias}: {src or rel.relpath} not found (download {RELEASE_URL + rel.relpath})")
            continue
        marker = artifacts / rel.alias / ".source"
        stamp = f"{src.resolve()}:{src.stat().st_size}:{int(src.stat().st_mtime)}:{code_hash('corenet', 'models')}"
        if ctx.force or not marker.is_file() or marker.read_text() != stamp:
            log(f"[catlip] mapping {src} -> {rel.alias}")
            _release_step(rel, src, artifacts, vocab)
            marker.write_text(stamp)
        out[rel.alias] = artifacts / rel.alias
    meta = root / "imagenet" / "meta" / "imagenet_class_index.json" if root else None
    meta = meta if meta and meta.is_file() else None
    st = Stages(artifacts, force=ctx.force, log=log)
    enc = out.get("catlip-enc-b16")
    probes = (("catlip-lp-in1k-b16", "imagefolder", IMAGENET_TRAIN), ("catlip-lp-places-b16", "places365", PLACES))
    for alias, layout, rel_root in probes:
        data_ok = root is not None and (Path(root) / rel_root).is_dir()
        if enc is None or not data_ok:
            log(f"[catlip] skip {alias}: needs catlip-enc-b16 and {rel_root} under the data root")
            continue
        key = stage_key({"alias": alias, "layout": layout}, code_hash("transfer", "transfer_data", "models"),
                        (enc / ".source").read_text())
        out[alias] = st.run(alias, key, lambda o, L=layout, r=rel_root: _probe_record(
            _probe_step(enc, L, Path(root) / r, meta, o, ctx.device, log)))
    for name in CAPTIONS:
        path = caption_file(root, name)
        if path is None:
            log(f"[catlip] skip catlip-vocab-{name}: no {CAPTIONS[name]}.{{jsonl,tsv,txt}} under the data root")
            continue
        key = stage_key({"captions": str(path), "size": path.stat().st_size}, code_hash("vocab_stats", "labels"))
        out[f"catlip-vocab-{name}"] = st.run(f"catlip-vocab-{name}", key,
                                             lambda o, p=path: _vocab_stats_step(p, meta, o))
    encoders = {s: out[f"catlip-enc-{s}"] for s in SIZES if f"catlip-enc-{s}" in out}
    if encoders and root is not None:
        from .pipeline import dense_transfer

        out.update(dense_transfer({f"catlip-{s}": d for s, d in encoders.items()}, artifacts, "paper", Path(root),
                                  ctx.device, log))
    return out
