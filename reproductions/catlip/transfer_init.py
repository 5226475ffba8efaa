"""Transfer Init: start a downstream classifier from CatLIP's pre-trained rows.

The paper (Sec. 4.2) maps each target label to vocabulary synsets by WordNet
path similarity and copies the matching classifier rows; labels made of
several synsets get the average, unmatched labels keep a random row. corenet
has no code for this (its fine-tuning configs re-initialise the classifier),
so this module is our reading of the text. Choices the paper leaves open, made
explicit here:

* threshold α on ``path_similarity`` (>= α counts as a match); the paper gives
  no value, we default to 0.5 (i.e. at most one hypernym edge away; the smoke/mini
  profiles use 0.25 with their small caption vocabulary);
* when several vocabulary synsets tie for the best similarity, their rows are
  averaged (same treatment as multi-synset labels);
* the bias is transferred with the same averaging (``transfer_bias``).

Speed: a best match over a 24k-synset vocabulary for 1,000 labels would be 24M
``path_similarity`` calls in NLTK. Path similarity is 1/(1 + min over common
hypernyms c of d(t,c) + d(v,c)), so we precompute, for every hypernym c, the
nearest vocabulary synset below it; a label then costs one walk up its own
hypernym graph.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import wordnet as W

DEFAULT_ALPHA = 0.5
_WNID = re.compile(r"^n\d{8}$")


@dataclass
class LabelMatch:
    label: str
    synsets: list[int]              # target synsets the label was parsed into
    rows: list[int]                 # vocabulary rows averaged into the new row
    kind: str                       # exact | similar | unmatched
    similarity: float               # best similarity (mean over parts for multi-synset labels)


@dataclass
class Coverage:
    alpha: float
    n_labels: int
    exact: int
    similar: int
    unmatched: int
    at_threshold: dict = field(default_factory=dict)  # thr -> labels with best sim >= thr
    matches: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"alpha": self.alpha, "n_labels": self.n_labels, "exact": self.exact,
                "similar": self.similar, "matched": self.exact + self.similar,
                "unmatched": self.unmatched, "at_threshold": self.at_threshold}


class VocabMatcher:
    def __init__(self, vocab_offsets: list[int]):
        self.idx = W.noun_index()
        self.offsets = list(vocab_offsets)
        self.row = {o: i for i, o in enumerate(self.offsets)}
        self.down: dict[int, tuple[int, list[int]]] = {}
        for i, o in enumerate(self.offsets):
            for c, d in self.idx.ancestors(o).items():
                cur = self.down.get(c)
                if cur is None or d < cur[0]:
                    self.down[c] = (d, [i])
                elif d == cur[0]:
                    cur[1].append(i)

    def best(self, target: int) -> tuple[float, list[int]]:
        if target in self.row:
            return 1.0, [self.row[target]]
        best_d, rows = None, set()
        for c, a in self.idx.ancestors(target).items():
            hit = self.down.get(c)
            if hit is None:
                continue
            d = a + hit[0]
            if best_d is None or d < best_d:
                best_d, rows = d, set(hit[1])
            elif d == best_d:
                rows.update(hit[1])
        if best_d is None:
            return 0.0, []
        return 1.0 / (best_d + 1), sorted(rows)


def parse_label(label: str) -> list[int]:
    """Label -> target noun synsets. ImageNet wnids map to themselves; free
    text (Places365 ``/r/restaurant_kitchen``, ``/b/bakery/shop``, or plain
    names) maps to the whole phrase's first noun sense when WordNet has the
    compound, else to each word's first noun sense."""
    idx = W.noun_index()
    label = label.strip()
    if _WNID.match(label):
        return [int(label[1:])]
    text = re.sub(r"^/[a-z]/", "", label.lower()).strip("/")
    words = [w for w in re.split(r"[/_\s,]+", text) if w]
    compound = "_".join(words)
    if compound in idx.lemma_offsets:
        return [idx.lemma_offsets[compound][0]]
    from nltk.stem import WordNetLemmatizer
    lem = WordNetLemmatizer()
    out = []
    for w in words:
        offs = idx.lemma_offsets.get(lem.lemmatize(w))
        if offs and offs[0] not in out:
            out.append(offs[0])
    return out


def match_labels(labels: list[str], vocab_offsets: list[int], alpha: float = DEFAULT_ALPHA,
                 thresholds=(0.1, 0.2, 0.25, 0.33, 0.5, 1.0), matcher: VocabMatcher | None = None) -> Coverage:
    m = matcher or VocabMatcher(vocab_offsets)
    matches, best_sims = [], []
    for lab in labels:
        targets = parse_label(lab)
        rows, sims, exact_all = [], [], bool(targets)
        for t in targets:
            s, r = m.best(t)
            sims.append(s)
            if s >= alpha:
                rows.extend(x for x in r if x not in rows)
            if s < 1.0:
                exact_all = False
        sim = sum(sims) / len(sims) if sims else 0.0
        best_sims.append(sim)
        if rows and exact_all:
            kind = "exact"
        elif rows:
            kind = "similar"
        else:
            kind = "unmatched"
        matches.append(LabelMatch(lab, targets, rows, kind, sim))
    cov = Coverage(alpha=alpha, n_labels=len(labels),
                   exact=sum(x.kind == "exact" for x in matches),
                   similar=sum(x.kind == "similar" for x in matches),
                   unmatched=sum(x.kind == "unmatched" for x in matches),
                   at_threshold={str(t): sum(s >= t for s in best_sims) for t in thresholds},
                   matches=matches)
    return cov


def transfer_init(pretrained: torch.nn.Linear, coverage: Coverage, transfer_bias: bool = True,
                  seed: int = 0) -> torch.nn.Linear:
    """New Linear(in, n_labels): matched rows = mean of the mapped pre-trained
    rows; unmatched rows random (trunc-normal std 0.02, zero bias)."""
    g = torch.Generator().manual_seed(seed)
    new = torch.nn.Linear(pretrained.in_features, coverage.n_labels)
    with torch.no_grad():
        w = torch.randn(coverage.n_labels, pretrained.in_features, generator=g).mul_(0.02).clamp_(-0.04, 0.04)
        b = torch.zeros(coverage.n_labels)
        for i, mt in enumerate(coverage.matches):
            if mt.rows:
                w[i] = pretrained.weight[mt.rows].mean(0)
                if transfer_bias and pretrained.bias is not None:
                    b[i] = pretrained.bias[mt.rows].mean()
        new.weight.copy_(w)
        new.bias.copy_(b)
    return new


def imagenet_labels(meta_dir: str | Path) -> list[str]:
    """The 1,000 ImageNet wnids in class-index order."""
    d = json.loads((Path(meta_dir) / "imagenet_class_index.json").read_text())
    return [d[str(i)][0] for i in range(len(d))]


def extractable_offsets() -> list[int]:
    """All noun synsets the caption->label rule can ever produce (synsets that
    are the first sense of their own head lemma): the largest vocabulary any
    caption corpus could yield, used as an upper bound on coverage."""
    idx = W.noun_index()
    return sorted(o for o, l in idx.first_lemma.items() if idx.lemma_offsets.get(l, [None])[0] == o)
