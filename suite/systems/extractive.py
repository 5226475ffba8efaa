"""Lead-k: the extractive baseline that answers with the first k sentences of the article.

It needs no model, so its ROUGE on CNN/DM and XSUM is known from the literature (Lead-3 on CNN/DM,
See et al. 2017; Lead-1 on XSUM, Narayan et al. 2018). Reproducing those numbers proves the
summarization task's data, references and ROUGE scorers before any language model is trusted with them.

params: ``k`` (number of leading sentences, default 3). Sentences come from
``suite.metrics.split_sentences`` (rule stated there); they are joined with newlines.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from suite.interfaces import Example, Generation, GenerationRequest, RunContext
from suite.metrics import split_sentences

IMPL_VERSION = "lead-k-1"
_ARTICLE_FIELDS = ("article", "document", "doc")


def article_of(request: GenerationRequest, example: Example) -> str:
    """The document to summarise: the task's article field, else the last ``Article: ...\\nSummary:`` in the prompt."""
    for key in _ARTICLE_FIELDS:
        value = example.data.get(key)
        if isinstance(value, str):
            return value
    prompt = request.prompt
    head, sep, _ = prompt.rpartition("\nSummary:")
    body = head if sep else prompt
    return body.rpartition("Article: ")[2] if "Article: " in body else body


class LeadSystem:
    """First k sentences of each article (Lead-3 / Lead-1)."""

    def __init__(self, params: Mapping[str, Any], ctx: RunContext):
        unknown = set(params) - {"k"}
        if unknown:
            raise ValueError(f"lead: unknown params {sorted(unknown)} (known: k)")
        self.k = int(params.get("k", 3))
        if self.k < 1:
            raise ValueError(f"lead: k must be >= 1, got {self.k}")

    def identity(self) -> Mapping[str, Any]:
        return {"impl": IMPL_VERSION, "k": self.k}

    def lead(self, article: str) -> Generation:
        sentences = split_sentences(article)
        return Generation(text="\n".join(sentences[: self.k]), stats={"sentences_in_article": float(len(sentences))})

    def predict(self, requests: Sequence[GenerationRequest], examples: Sequence[Example]) -> list[Generation]:
        return [self.lead(article_of(r, e)) for r, e in zip(requests, examples)]
