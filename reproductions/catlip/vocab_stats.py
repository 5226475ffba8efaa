"""Vocabulary statistics of a caption set: what Figures 2(b), 2(c), 3(a), 3(b) and 6 of CatLIP plot.

The paper (arXiv 2404.15653 v1, Sections 3.1 and 4.2, Appendix B) prints these only as plots for CC3M and
DataComp-1.3B; the numbers here are recomputed from whatever captions are given (Flickr8k at the mini
profile, a local DataComp/CC3M caption dump at the paper profile):

* Figure 2(b): ImageNet-1k classes matched by the vocabulary at WordNet path-similarity thresholds 0.1-1.0
  (the text: about 40% of ImageNet-1k labels match exactly in DataComp-1.3B);
* Figure 2(c): occurrences of each ImageNet-1k synset in the captions, against Vτ;
* Figure 3(a): the long tail: synset counts sorted in decreasing order;
* Figure 3(b) and Figure 6 (its x-axis): vocabulary size (synsets with count >= Vτ) for each Vτ.

A synset is counted once per caption it occurs in (``vocab.count_synsets``), with corenet's label rule
(``labels.LabelExtractor``). Everything is returned as numbers plus arrays for the figures; nothing is
printed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

PATH_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
PAPER_VTAUS = (100, 500, 1000, 2500, 5000)
"""Figure 3(b) and Figure 6 sweep these values of Vτ (Appendix B)."""


@dataclass
class VocabStats:
    n_captions: int
    unique_synsets: int
    v_tau: int
    vocab_size: int
    size_at_vtau: dict[int, int]
    in1k_matched_at: dict[float, int]
    """Figure 2(b): ImageNet-1k classes whose best path similarity to the vocabulary is >= the threshold."""
    in1k_counts: list[int]
    """Figure 2(c): caption count of each ImageNet-1k synset, in class-index order."""
    sorted_counts: list[int] = field(repr=False)
    """Figure 3(a): every synset's count, decreasing."""

    def metrics(self, prefix: str = "") -> dict[str, float]:
        m = {f"{prefix}captions": self.n_captions, f"{prefix}unique_synsets": self.unique_synsets,
             f"{prefix}vocab_size": self.vocab_size, f"{prefix}v_tau": self.v_tau}
        for v, n in self.size_at_vtau.items():
            m[f"{prefix}vocab_size_vtau{v}"] = n
        for t, n in self.in1k_matched_at.items():
            m[f"{prefix}in1k_matched_sim{int(round(100 * t))}"] = n
        if self.in1k_counts:
            m[f"{prefix}in1k_exact_frac"] = self.in1k_matched_at.get(1.0, 0) / len(self.in1k_counts)
            m[f"{prefix}in1k_occurring"] = sum(c > 0 for c in self.in1k_counts)
            m[f"{prefix}in1k_at_least_vtau"] = sum(c >= self.v_tau for c in self.in1k_counts)
        if self.sorted_counts:
            total = sum(self.sorted_counts)
            top = max(1, len(self.sorted_counts) // 100)
            m[f"{prefix}top1pct_synsets_share"] = sum(self.sorted_counts[:top]) / total
            m[f"{prefix}singleton_synsets"] = sum(c == 1 for c in self.sorted_counts)
        return m

    def arrays(self) -> dict:
        return {"sorted_counts": self.sorted_counts, "in1k_counts": self.in1k_counts,
                "size_at_vtau": {str(k): v for k, v in self.size_at_vtau.items()},
                "in1k_matched_at": {str(k): v for k, v in self.in1k_matched_at.items()}, "v_tau": self.v_tau}


def compute(labels: Sequence[Sequence[int]], v_tau: int, imagenet_wnids: Sequence[str] | None = None,
            vtaus: Sequence[int] = PAPER_VTAUS) -> VocabStats:
    """Statistics of per-caption synset labels (offsets), at threshold ``v_tau`` (count >= Vτ)."""
    from . import transfer_init as T
    from .vocab import count_synsets, select

    counts: Counter = count_synsets(labels)
    sizes = {int(v): len(select(counts, v)) for v in sorted(set(vtaus) | {v_tau})}
    vocab = [o for o, _ in select(counts, v_tau)]
    matched, in1k = {}, []
    if imagenet_wnids:
        cov = T.match_labels(list(imagenet_wnids), vocab, alpha=1.0, thresholds=PATH_THRESHOLDS)
        matched = {float(t): int(n) for t, n in cov.at_threshold.items()}
        in1k = [int(counts.get(int(w[1:]), 0)) for w in imagenet_wnids]
    return VocabStats(n_captions=len(labels), unique_synsets=len(counts), v_tau=v_tau, vocab_size=len(vocab),
                      size_at_vtau=sizes, in1k_matched_at=matched, in1k_counts=in1k,
                      sorted_counts=sorted(counts.values(), reverse=True))
