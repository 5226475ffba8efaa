"""Image-text pairs for pre-training: JSONL/TSV manifests and webdataset-style tars.

Why it looks like this:

* The paper trains on DataComp/CC3M web pairs; the suite's real sample is a
  manifest of COCO images + captions. Both reduce to a list of "sources"
  (a manifest, or a tar shard holding ``NNNN.jpg`` + ``NNNN.txt``) of
  (image, caption) records, so one iterator serves both.
* Resumability is part of reproducibility: a run killed at step k and resumed
  must see exactly the samples an uninterrupted run would. The order of epoch e
  is a pure function of (seed, e) - shards shuffled, then samples within each
  shard shuffled - so the iterator state is just (epoch, position).
* Streaming: tar shards are opened one at a time and read sequentially; only
  the member names of the current shard are held in memory.
* Targets are built on the fly from captions (as corenet does), with the
  word -> synset cache making that cheap.
"""
from __future__ import annotations

import csv
import io
import json
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Pair:
    image: str | bytes  # a path, or encoded image bytes (tar member)
    caption: str
    key: str


def read_manifest(path: str | Path, all_captions: bool = True) -> list[Pair]:
    """JSONL lines ``{"image_path", "caption"| "captions"}`` or a TSV with
    ``image_path`` and ``caption`` columns; image paths relative to the file."""
    path = Path(path)
    base = path.parent
    pairs: list[Pair] = []
    if path.suffix == ".jsonl":
        with open(path, encoding="utf-8") as f:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    continue
                d = json.loads(line)
                img = str((base / d["image_path"]).resolve())
                caps = d.get("captions") or [d["caption"]]
                if not all_captions:
                    caps = caps[:1]
                for j, c in enumerate(caps):
                    pairs.append(Pair(img, c, f"{ln}:{j}"))
    elif path.suffix in (".tsv", ".txt"):
        with open(path, encoding="utf-8", newline="") as f:
            for ln, row in enumerate(csv.DictReader(f, delimiter="\t"), 2):
                pairs.append(Pair(str((base / row["image_path"]).resolve()), row["caption"], str(ln)))
    else:
        raise ValueError(f"{path}: unknown manifest type (expected .jsonl or .tsv)")
    return pairs


def write_tar_shards(pairs: Sequence[Pair], out_dir: str | Path, per_shard: int = 100) -> list[Path]:
    """Write pairs as webdataset-style shards (``NNNN.jpg`` + ``NNNN.txt``)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards = []
    for s in range(0, len(pairs), per_shard):
        p = out_dir / f"shard-{s // per_shard:05d}.tar"
        with tarfile.open(p, "w") as tf:
            for i, pair in enumerate(pairs[s:s + per_shard], start=s):
                img = pair.image if isinstance(pair.image, bytes) else Path(pair.image).read_bytes()
                for name, data in ((f"{i:06d}.jpg", img), (f"{i:06d}.txt", pair.caption.encode())):
                    ti = tarfile.TarInfo(name)
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        shards.append(p)
    return shards


def _tar_keys(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        names = tf.getnames()
    stems = {}
    for n in names:
        stem, _, ext = n.rpartition(".")
        stems.setdefault(stem, set()).add(ext.lower())
    return sorted(k for k, e in stems.items() if "txt" in e and e & {"jpg", "jpeg", "png", "webp"})


class PairStream:
    """Seeded, resumable, epoch-based stream of Pair records.

    ``state_dict()`` = {"epoch", "position"}: position counts records already
    yielded in the epoch. ``load_state_dict`` + iterating continues exactly
    where an uninterrupted stream would be.
    """

    def __init__(self, sources: Sequence[str | Path] | Sequence[Pair], seed: int = 0, shuffle: bool = True):
        self.seed, self.shuffle = seed, shuffle
        self.epoch, self.position = 0, 0
        if sources and isinstance(sources[0], Pair):
            self._groups: list = [list(sources)]
            self._kind = "pairs"
        else:
            self._groups = [Path(s) for s in sources]
            self._kind = "tars" if all(str(s).endswith(".tar") for s in self._groups) else "manifests"
            if self._kind == "manifests":
                self._groups = [read_manifest(s) for s in self._groups]
                self._kind = "pairs"

    def __len__(self) -> int:
        if self._kind == "pairs":
            return sum(len(g) for g in self._groups)
        return sum(len(_tar_keys(p)) for p in self._groups)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed}

    def load_state_dict(self, s: dict) -> None:
        if s.get("seed", self.seed) != self.seed:
            raise ValueError(f"stream state was saved with seed {s['seed']}, this stream has {self.seed}")
        self.epoch, self.position = int(s["epoch"]), int(s["position"])

    def _epoch_rng(self, epoch: int, salt: int) -> random.Random:
        return random.Random((self.seed * 1_000_003 + epoch) * 7919 + salt)

    def _iter_epoch(self, epoch: int) -> Iterator[Pair]:
        order = list(range(len(self._groups)))
        if self.shuffle:
            self._epoch_rng(epoch, -1).shuffle(order)
        for gi in order:
            if self._kind == "pairs":
                items = list(range(len(self._groups[gi])))
                if self.shuffle:
                    self._epoch_rng(epoch, gi).shuffle(items)
                for i in items:
                    yield self._groups[gi][i]
            else:
                path = self._groups[gi]
                keys = _tar_keys(path)
                if self.shuffle:
                    self._epoch_rng(epoch, gi).shuffle(keys)
                with tarfile.open(path) as tf:
                    members = {m.name: m for m in tf.getmembers()}
                    for k in keys:
                        cap = tf.extractfile(members[k + ".txt"]).read().decode("utf-8").strip()
                        img_name = next(k + "." + e for e in ("jpg", "jpeg", "png", "webp")
                                        if k + "." + e in members)
                        yield Pair(tf.extractfile(members[img_name]).read(), cap, f"{path.name}/{k}")

    def __iter__(self) -> Iterator[Pair]:
        """Infinite: walks epochs; updates (epoch, position) as it yields."""
        while True:
            skip = self.position
            for i, p in enumerate(self._iter_epoch(self.epoch)):
                if i < skip:
                    continue
                self.position = i + 1
                yield p
            self.epoch, self.position = self.epoch + 1, 0


def load_image(src: str | bytes) -> Image.Image:
    img = Image.open(io.BytesIO(src) if isinstance(src, bytes) else src)
    return img.convert("RGB")


def train_transform(resolution: int, scale=(0.08, 1.0)):
    from torchvision import transforms as T
    return T.Compose([
        T.RandomResizedCrop(resolution, scale=scale, interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(),
        T.ToTensor(),
        T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])


def eval_transform(resolution: int):
    from torchvision import transforms as T
    return T.Compose([T.Resize(int(round(resolution * 232 / 224))), T.CenterCrop(resolution),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


_IMAGE_CACHE: dict = {}  # (path, short side) -> shrunk PIL image, shared by Batchers in a process


class Batcher:
    """Turns a PairStream into (images, targets, captions) batches.

    Augmentation randomness comes from a torch Generator seeded by
    (seed, epoch, position) of each sample, so resumed runs re-create the same
    crops without saving RNG state.
    """

    def __init__(self, stream: PairStream, batch_size: int, resolution: int,
                 label_fn: Callable[[str], torch.Tensor] | None = None, seed: int = 0,
                 cache_images: int = 0, crop_scale_min: float = 0.08):
        self.stream, self.batch_size, self.resolution = stream, batch_size, resolution
        self.label_fn, self.seed = label_fn, seed
        self.tf = train_transform(resolution, scale=(crop_scale_min, 1.0))
        self._it = None
        # Small-data speed-up: keep decoded images (path-sourced only), shrunk
        # to a short side of 2x the training resolution, for up to
        # ``cache_images`` distinct files. JPEG decoding of 640 px COCO images
        # otherwise dominates a tiny-ViT step on CPU. Off (0) by default.
        self.cache_images = cache_images
        self._cache: dict[str, Image.Image] = {}

    def _load(self, src):
        if not self.cache_images or isinstance(src, bytes):
            return load_image(src)
        short = 2 * self.resolution
        key = (src, short)
        img = _IMAGE_CACHE.get(key)
        if img is None:
            img = Image.open(src)
            img.draft("RGB", (short, short))  # JPEG: decode at a reduced scale >= short side
            img = img.convert("RGB")
            if min(img.size) > short:
                w, h = img.size
                r = short / min(w, h)
                img = img.resize((max(1, round(w * r)), max(1, round(h * r))), Image.BILINEAR)
            if len(_IMAGE_CACHE) < self.cache_images:
                _IMAGE_CACHE[key] = img
        return img

    def _augment(self, img: Image.Image, epoch: int, pos: int) -> torch.Tensor:
        state = torch.random.get_rng_state()
        torch.manual_seed((self.seed * 1_000_003 + epoch) * 1_000_033 + pos)
        try:
            return self.tf(img)
        finally:
            torch.random.set_rng_state(state)

    def next_batch(self, rank: int = 0, world: int = 1) -> dict:
        """The next global batch of ``batch_size`` pairs; under data parallelism rank ``r`` of ``world`` decodes
        only pairs ``r, r + world, ...`` of it, so every rank advances the same stream (one resumable state)
        and the ranks together see exactly the single-process batch."""
        if self._it is None:
            self._it = iter(self.stream)
        if self.batch_size % world:
            raise ValueError(f"global batch {self.batch_size} is not divisible by {world} processes")
        imgs, caps, tgts = [], [], []
        for i in range(self.batch_size):
            p = next(self._it)
            if i % world != rank:
                continue
            imgs.append(self._augment(self._load(p.image), self.stream.epoch, self.stream.position))
            caps.append(p.caption)
            if self.label_fn is not None:
                tgts.append(self.label_fn(p.caption))
        out = {"images": torch.stack(imgs), "captions": caps}
        if tgts:
            out["targets"] = torch.stack(tgts)
        return out

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, s: dict) -> None:
        self.stream.load_state_dict(s)
        self._it = None
