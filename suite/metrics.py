"""Text metrics shared by task adapters, with the scorer settings recorded next to them."""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=4)
def _scorer(n: int):
    from rouge_score import rouge_scorer
    # The LayerSkip code lowercases before ROUGE; rouge_score's tokenizer lowercases too. No stemming.
    return rouge_scorer.RougeScorer([f"rouge{n}"], use_stemmer=False)


def rouge_n_f(prediction: str, reference: str, n: int = 2) -> float:
    """ROUGE-n F-measure from the reference `rouge-score` implementation."""
    return float(_scorer(n).score(reference, prediction)[f"rouge{n}"].fmeasure)


@lru_cache(maxsize=1)
def _lsum_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeLsum"], use_stemmer=False)


_NO_BREAK_AFTER = ("mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "gen", "gov", "sen", "rep", "rev", "lt",
                   "col", "sgt", "capt", "cpl", "no", "vs", "inc", "co", "corp", "ltd", "jan", "feb", "aug",
                   "sept", "oct", "nov", "dec", "u.s", "u.k", "u.n", "e.g", "i.e", "etc")
_BREAK = re.compile(r"(?<=[.!?])([\"'\u2019\u201d)\]]*)\s+(?=[\"'\u2018\u201c(\[]?[A-Z0-9\u00a3$])")


def split_sentences(text: str) -> list[str]:
    """Sentences of English news text, for Lead-k and summary-level ROUGE-L.

    Rule (stated because ROUGE-Lsum and Lead-k depend on it): a line break always ends a sentence; otherwise
    a sentence ends at ``.``, ``!`` or ``?`` (plus closing quotes or brackets) followed by whitespace and an
    upper-case letter, a digit, a currency sign or an opening quote, unless the word before the full stop is
    a single letter (an initial) or a common abbreviation (Mr, Dr, St, U.S, Jan, ...). PTB-tokenised text
    (``Friday . The club``) splits the same way. No model, no downloads: the same text always splits the same.
    """
    out: list[str] = []
    for line in text.splitlines():
        start = 0
        for m in _BREAK.finditer(line):
            cut = m.start() + len(m.group(1))
            word = line[start:m.start()].rstrip(".!?").rsplit(None, 1)
            last = word[-1].lower().lstrip("(\"'") if word else ""
            if len(last) == 1 and last.isalpha() or last in _NO_BREAK_AFTER:
                continue
            out.append(line[start:cut].strip())
            start = m.end()
        out.append(line[start:].strip())
    return [s for s in out if s]


def rouge_lsum_f(prediction: str, reference: str) -> float:
    """Summary-level ROUGE-L F-measure (rouge-score ``rougeLsum``): union LCS over the sentences of both texts,
    split with :func:`split_sentences`. This is the ROUGE-L of ROUGE-1.5.5 (pyrouge) that summarization papers
    report, unlike the sentence-level ``rougeL`` (one LCS over the whole text) that torchmetrics computes."""
    pred = "\n".join(split_sentences(prediction))
    ref = "\n".join(split_sentences(reference))
    return float(_lsum_scorer().score(ref, pred)["rougeLsum"].fmeasure)


def normalize_ws(text: str) -> str:
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_ws(prediction) == normalize_ws(reference))


SCORER_SETTINGS = {"rouge": "rouge-score, no stemming, lowercased by its tokenizer, F-measure",
                   "rougeLsum": "rouge-score rougeLsum (summary-level LCS) on sentences from split_sentences",
                   "exact_match": "whitespace-normalised full-string equality"}
