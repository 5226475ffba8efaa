"""Text metrics shared by task adapters, with the scorer settings recorded next to them."""
from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4)
def _scorer(n: int):
    from rouge_score import rouge_scorer
    # The LayerSkip code lowercases before ROUGE; rouge_score's tokenizer lowercases too. No stemming.
    return rouge_scorer.RougeScorer([f"rouge{n}"], use_stemmer=False)


def rouge_n_f(prediction: str, reference: str, n: int = 2) -> float:
    """ROUGE-n F-measure from the reference `rouge-score` implementation."""
    return float(_scorer(n).score(reference, prediction)[f"rouge{n}"].fmeasure)


def normalize_ws(text: str) -> str:
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_ws(prediction) == normalize_ws(reference))


SCORER_SETTINGS = {"rouge": "rouge-score, no stemming, lowercased by its tokenizer, F-measure",
                   "exact_match": "whitespace-normalised full-string equality"}
