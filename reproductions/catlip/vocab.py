"""The CatLIP synset vocabulary: count synsets over captions, keep the frequent ones.

Why: corenet ships only a pre-built vocabulary (a pickle of {id: count}, of
which it takes the top ``vocab_size`` keys); the script that counted synsets
and applied the paper's threshold Vτ is not released. We rebuild it:

* threshold ``v_tau`` with ``comparison="ge"`` (count >= Vτ, the suite's
  default) or ``"gt"`` (the paper's text, C > Vτ); optional ``top_k`` to mimic
  corenet's "first vocab_size keys" on top of that;
* deterministic order: count descending, then WordNet offset ascending, so two
  builds of the same captions give byte-identical files;
* JSON (not pickle) with everything needed to judge whether a vocabulary fits
  a checkpoint: Vτ, WordNet version and index checksum, a checksum of the
  captions it was counted on, and the extractor settings. Loading validates and
  fails with one line naming the file and the field.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from . import wordnet as W

FORMAT = "catlip-vocab/1"


class VocabError(ValueError):
    pass


@dataclass
class Vocab:
    offsets: list[int]
    counts: list[int]
    v_tau: int
    comparison: str = "ge"
    wordnet_version: str = W.WORDNET_VERSION
    source_sha256: str = ""
    n_captions: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self._pos = {o: i for i, o in enumerate(self.offsets)}

    def __len__(self) -> int:
        return len(self.offsets)

    def index_of(self, offset: int) -> int | None:
        return self._pos.get(offset)

    def __contains__(self, offset: int) -> bool:
        return offset in self._pos

    @property
    def wnids(self) -> list[str]:
        return [W.wnid(o) for o in self.offsets]

    def corenet_ids(self) -> list[str]:
        return [W.corenet_id(o) for o in self.offsets]

    def encode(self, synsets: Iterable[int]) -> list[int]:
        """synset offsets -> sorted unique vocabulary indices (OOV dropped)."""
        return sorted({self._pos[o] for o in synsets if o in self._pos})

    def multi_hot(self, synsets: Iterable[int]):
        import torch
        t = torch.zeros(len(self), dtype=torch.float32)
        idx = self.encode(synsets)
        if idx:
            t[idx] = 1.0
        return t

    def to_json(self) -> dict:
        idx = W.noun_index()
        return {
            "format": FORMAT,
            "wordnet_version": self.wordnet_version,
            "v_tau": self.v_tau,
            "comparison": self.comparison,
            "source_sha256": self.source_sha256,
            "n_captions": self.n_captions,
            "size": len(self),
            "meta": self.meta,
            "synsets": [{"wnid": W.wnid(o), "name": idx.synset_name(o), "count": c}
                        for o, c in zip(self.offsets, self.counts)],
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1, sort_keys=True) + "\n")
        return path


def captions_sha256(captions: Sequence[str]) -> str:
    h = hashlib.sha256()
    for c in captions:
        h.update(c.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def count_synsets(labels: Iterable[Iterable[int]]) -> Counter:
    """Each synset counted once per caption it occurs in."""
    c: Counter = Counter()
    for lab in labels:
        c.update(set(lab))
    return c


def select(counts: Counter, v_tau: int, comparison: str = "ge", top_k: int | None = None):
    if comparison not in ("ge", "gt"):
        raise ValueError(f"comparison must be 'ge' or 'gt', got {comparison!r}")
    keep = [(o, n) for o, n in counts.items() if (n >= v_tau if comparison == "ge" else n > v_tau)]
    keep.sort(key=lambda t: (-t[1], t[0]))
    if top_k is not None:
        keep = keep[:top_k]
    return keep


def build_vocab(captions: Sequence[str], v_tau: int = 500, comparison: str = "ge",
                top_k: int | None = None, extractor=None) -> Vocab:
    from .labels import LabelExtractor
    ex = extractor or LabelExtractor()
    counts = count_synsets(ex(c) for c in captions)
    keep = select(counts, v_tau, comparison, top_k)
    return Vocab(offsets=[o for o, _ in keep], counts=[n for _, n in keep], v_tau=v_tau,
                 comparison=comparison, source_sha256=captions_sha256(captions),
                 n_captions=len(captions),
                 meta={"extractor": ex.info(), "top_k": top_k, "unique_synsets": len(counts)})


def load_vocab(path: str | Path) -> Vocab:
    path = Path(path)

    def fail(fieldname: str, why: str):
        raise VocabError(f"{path}: field '{fieldname}': {why}")

    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise VocabError(f"{path}: file not found") from None
    except json.JSONDecodeError as e:
        raise VocabError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(d, dict):
        fail("<root>", "expected an object")
    if d.get("format") != FORMAT:
        fail("format", f"expected {FORMAT!r}, got {d.get('format')!r}")
    if d.get("wordnet_version") != W.WORDNET_VERSION:
        fail("wordnet_version", f"expected {W.WORDNET_VERSION!r}, got {d.get('wordnet_version')!r}")
    for k in ("v_tau", "n_captions", "size"):
        if not isinstance(d.get(k), int) or isinstance(d.get(k), bool) or d[k] < 0:
            fail(k, "expected a non-negative integer")
    if d.get("comparison") not in ("ge", "gt"):
        fail("comparison", "expected 'ge' or 'gt'")
    if not isinstance(d.get("source_sha256"), str):
        fail("source_sha256", "expected a string")
    syn = d.get("synsets")
    if not isinstance(syn, list):
        fail("synsets", "expected a list")
    if len(syn) != d["size"]:
        fail("size", f"says {d['size']} but synsets has {len(syn)} entries")
    offsets, counts, seen = [], [], set()
    for i, s in enumerate(syn):
        if not isinstance(s, dict):
            fail(f"synsets[{i}]", "expected an object")
        try:
            off = W.parse_wnid(str(s.get("wnid")))
        except ValueError:
            fail(f"synsets[{i}].wnid", f"not a noun synset id: {s.get('wnid')!r}")
        if off in seen:
            fail(f"synsets[{i}].wnid", f"duplicate {s['wnid']}")
        c = s.get("count")
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            fail(f"synsets[{i}].count", "expected a non-negative integer")
        if counts and (c > counts[-1] or (c == counts[-1] and off < offsets[-1])):
            fail(f"synsets[{i}]", "not in (count desc, offset asc) order")
        seen.add(off)
        offsets.append(off)
        counts.append(c)
    return Vocab(offsets=offsets, counts=counts, v_tau=d["v_tau"], comparison=d["comparison"],
                 wordnet_version=d["wordnet_version"], source_sha256=d["source_sha256"],
                 n_captions=d["n_captions"], meta=d.get("meta") or {})


def main(argv=None):
    import argparse

    from .data import read_manifest
    p = argparse.ArgumentParser(description="Build a CatLIP synset vocabulary from a JSONL/TSV manifest")
    p.add_argument("manifest")
    p.add_argument("out")
    p.add_argument("--v-tau", type=int, default=500)
    p.add_argument("--comparison", choices=("ge", "gt"), default="ge")
    p.add_argument("--top-k", type=int)
    a = p.parse_args(argv)
    caps = [x.caption for x in read_manifest(a.manifest)]
    v = build_vocab(caps, a.v_tau, a.comparison, a.top_k)
    v.save(a.out)
    print(f"{a.out}: {len(v)} synsets with count {'>=' if a.comparison == 'ge' else '>'} {a.v_tau} "
          f"from {len(caps)} captions ({v.meta['unique_synsets']} distinct)")


if __name__ == "__main__":
    main()
