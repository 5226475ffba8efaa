"""CNN/DailyMail and XSUM abstractive summarization as evaluated by LayerSkip (Table 3).

Prompt and reference follow the official LayerSkip ``data.py`` (facebookresearch/LayerSkip):

* prompt ``"Article: {article}\\nSummary:"``;
* an n-shot prefix of ``"Article: {shot article}\\nSummary: {shot summary with every \\n removed}\\n"`` per shot,
  followed by one more ``"\\n"``; CNN/DM is 1-shot and XSUM 0-shot in the paper (after Draft&Verify);
* shots are the first n rows of the *train* split shuffled with a seed (``Dataset.shuffle(seed)``, i.e. the
  permutation ``numpy.random.default_rng(seed).permutation(len(train))``), the same shots for every example;
* reference ``" " + highlights`` (XSUM: ``" " + summary``).

Data sources (``source=``):

* ``"frank"``: the 250 real CNN/DM *test* articles of the FRANK benchmark under the data root
  (``cnn_dailymail/frank_cnndm_test_250.jsonl``, sha256-checked). Its ``highlights`` are PTB-tokenized
  (``Locke 's``); ROUGE via rouge-score's tokenizer is insensitive to that spacing.
* ``"jsonl"``: a user file named by ``REPRO_CNNDM_JSONL`` (fields ``article``, ``highlights``, optional ``id``)
  or ``REPRO_XSUM_JSONL`` (fields ``document``, ``summary``, optional ``id``).
* ``"hf"``: the official Hugging Face splits (``abisee/cnn_dailymail`` config 3.0.0, ``EdinburghNLP/xsum``),
  loaded with Hugging Face ``datasets`` from its local cache, offline. ``repro data fetch cnn_dm`` (or ``xsum``)
  downloads them into that cache once; runs never download.
* ``"auto"`` (default): the user JSONL if its variable is set, else (CNN/DM) the FRANK file if present under the
  data root, else the HF cache; otherwise a one-line error saying where to get the data.

Deviations from the paper's code, all recorded in the task settings of every run:

* Examples keep the source file's order (the runner's ``limit`` takes the first N); the official
  ``benchmark.py`` shuffles them with ``random.shuffle`` first. The paper does not state N.
* When no train split is available (the FRANK file is test-only), the shots come from the *same* file: the
  first rows of ``default_rng(seed).permutation(len(file))`` other than the evaluated article itself.
* The official ``benchmark.py`` passes ``seed=None`` for the shots (not reproducible); we use ``seed=42``,
  the default of its ``sweep.py``.
* Generation stops at ``"\\nArticle:"`` (the model starting a new document) or a blank line; the official
  code stops only at EOS or 512 tokens unless ``--stop_words`` is given. Pass ``stop=[]`` to match it.
* Examples with an empty generation are scored 0 here; the official code drops them from the mean.

Metrics per example: ROUGE-1, ROUGE-2 and ROUGE-L F-measures from the reference ``rouge-score`` package
(``suite.metrics.rouge_n_f``), on lowercased text, no stemming. The paper used torchmetrics 1.3.2
``ROUGEScore``, whose default normaliser (lowercase, non-alphanumerics to spaces, whitespace split) is
rouge-score's tokenizer; with one reference and no stemming both give the same F-measures (torchmetrics'
``rougeL`` is the sentence-level LCS, like rouge-score's ``rougeL``, not ``rougeLsum``).
``rougeLsum`` (summary-level LCS over sentences, the ROUGE-L of ROUGE-1.5.5 that extractive-baseline papers
report) is added for the sanity table; sentences come from ``suite.metrics.split_sentences``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

from suite import hf_data
from suite.data import DataFile, DataMissing
from suite.interfaces import Example, Generation, GenerationRequest
from suite.metrics import rouge_lsum_f, rouge_n_f
from suite.provenance import sha256_file

STOP = ("\nArticle:", "\n\n")
DEFAULT_SHOT_SEED = 42

FRANK_CNNDM = DataFile(
    "cnn_dailymail/frank_cnndm_test_250.jsonl",
    sha256="67fde2127abe98dc6cb65926b48869266576a6de8ad61e3b44334c10f8234313",
    instructions="it is the 250 CNN/DM test articles of the FRANK benchmark (github.com/artidoro/frank, commit "
                 "5860706, data/articles-wbertscore-json/<40-hex id>.json) converted to JSONL; or set "
                 "REPRO_CNNDM_JSONL to a JSONL with article/highlights, or put the HF cnn_dailymail 3.0.0 files in "
                 "the HF cache",
)


def format_shot(article: str, summary: str) -> str:
    """One in-context example: the shot's summary has its newlines removed (not replaced), as in data.py."""
    return "Article: " + article + "\nSummary: " + summary.replace("\n", "") + "\n"


def build_prompt(article: str, shots: Sequence[tuple[str, str]] = ()) -> str:
    """The n-shot prefix (shots plus a trailing blank line) followed by the article to summarise."""
    prefix = "".join(format_shot(a, s) for a, s in shots)
    if shots:
        prefix += "\n"
    return prefix + f"Article: {article}\nSummary:"


def shot_permutation(n: int, seed: int) -> list[int]:
    """The row order of ``datasets.Dataset.shuffle(seed=seed)`` on n rows."""
    import numpy as np

    return [int(i) for i in np.random.default_rng(seed).permutation(n)]


# -- local Hugging Face caches (offline) -----------------------------------------------------------------------



def hf_rows(repos: Sequence[str], config: str | None, split: str,
            columns: Sequence[str]) -> tuple[list[dict[str, Any]], list[Path], str] | None:
    """Rows of one split from the local HF datasets cache (first repo id found), the arrow files read, and the
    repo id; None when no repo id has the split cached."""
    for repo in repos:
        try:
            ds = hf_data.load_split(repo, config, split)
        except DataMissing:
            continue
        keep = [c for c in columns if c in ds.column_names]
        return ds.select_columns(keep).to_list(), [Path(f["filename"]) for f in ds.cache_files], repo
    return None


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not JSON ({e})") from e
    return rows


# -- the tasks ----------------------------------------------------------------------------------------------------

class _SummarizationTask:
    name = ""
    main_metric = "rouge2"
    splits = ("test",)
    doc_field = "article"
    sum_field = "highlights"
    hf_repos: tuple[str, ...] = ()
    hf_config: str | None = None
    jsonl_env = ""
    sources: tuple[str, ...] = ("auto", "jsonl", "hf")

    def __init__(self, shots: int = 0, max_new_tokens: int = 512, source: str = "auto",
                 seed: int = DEFAULT_SHOT_SEED, stop: Sequence[str] | None = None):
        if source not in self.sources:
            raise ValueError(f"{self.name}: source must be one of {self.sources}, got {source!r}")
        if int(shots) < 0:
            raise ValueError(f"{self.name}: shots must be >= 0, got {shots}")
        self.shots = int(shots)
        self.max_new_tokens = int(max_new_tokens)
        self.source = source
        self.seed = int(seed)
        self.stop = tuple(STOP if stop is None else stop)
        # Filled in by examples(); they land in the run's task settings.
        self.resolved_source = ""
        self.shot_pool = ""
        self.deviations: tuple[str, ...] = ()
        self._loaded: dict[str, tuple[list[dict[str, Any]], list[Path], str]] = {}
        self._hf: dict[str, tuple[list[dict[str, Any]], list[Path], str] | None] = {}

    # -- where the rows come from --------------------------------------------------------------------------------
    def _missing_message(self, data_root: Path | None) -> str:
        raise NotImplementedError

    def _local_source(self, data_root: Path | None) -> tuple[list[dict[str, Any]], list[Path], str] | None:
        """Dataset-specific file under the data root (CNN/DM: FRANK); None when the dataset has none."""
        return None

    def _jsonl_source(self) -> tuple[list[dict[str, Any]], list[Path], str] | None:
        value = os.environ.get(self.jsonl_env)
        if not value:
            return None
        path = Path(value).expanduser()
        if not path.is_file():
            raise DataMissing(f"{self.jsonl_env}={value}: no such file")
        return self._normalise(_read_jsonl(path), str(path)), [path], f"jsonl:{path}"

    def _hf_split(self, split: str) -> tuple[list[dict[str, Any]], list[Path], str] | None:
        """One split from the HF datasets cache, read once per task object (the train split is large)."""
        if split not in self._hf:
            self._hf[split] = hf_rows(self.hf_repos, self.hf_config, split, ["id", self.doc_field, self.sum_field])
        return self._hf[split]

    def _hf_source(self, split: str) -> tuple[list[dict[str, Any]], list[Path], str] | None:
        found = self._hf_split(split)
        if found is None:
            return None
        rows, files, repo = found
        return self._normalise(rows, str(files[0]) if files else repo), files, f"hf-cache:{repo}:{split}"

    def _normalise(self, rows: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
        """Rows as {id, doc, summary}; ids fall back to the row index."""
        out, seen = [], set()
        for i, r in enumerate(rows):
            doc = r.get(self.doc_field, r.get("article", r.get("document")))
            summ = r.get(self.sum_field, r.get("highlights", r.get("summary")))
            if not isinstance(doc, str) or not isinstance(summ, str):
                raise ValueError(f"{where}: row {i} lacks the text fields {self.doc_field!r}/{self.sum_field!r}")
            rid = str(r.get("id", f"row-{i}"))
            if rid in seen:
                raise ValueError(f"{where}: duplicate id {rid!r}")
            seen.add(rid)
            out.append({"id": rid, "doc": doc, "summary": summ})
        return out

    def _load(self, split: str, data_root: Path | None) -> tuple[list[dict[str, Any]], list[Path], str]:
        if split not in self.splits:
            raise ValueError(f"{self.name} evaluates the split 'test' only, not {split!r}")
        key = str(data_root)
        if key in self._loaded:
            return self._loaded[key]
        found = None
        if self.source in ("auto", "jsonl"):
            found = self._jsonl_source()
            if found is None and self.source == "jsonl":
                raise DataMissing(f"{self.name}: source 'jsonl' needs {self.jsonl_env} set to a JSONL file")
        if found is None and self.source in ("auto", "frank"):
            found = self._local_source(data_root)
        if found is None and self.source in ("auto", "hf"):
            found = self._hf_source("test")
        if found is None:
            raise DataMissing(self._missing_message(data_root))
        self._loaded[key] = found
        return found

    def _train_shots(self) -> tuple[list[tuple[str, str]], list[Path]] | None:
        """The paper's shots: train split shuffled with the seed, first n rows (only from the offline HF cache)."""
        found = self._hf_split("train")
        if found is None:
            return None
        rows, files, _ = found
        perm = shot_permutation(len(rows), self.seed)[: self.shots]
        return [(rows[i][self.doc_field], rows[i][self.sum_field]) for i in perm], files

    # -- Task protocol --------------------------------------------------------------------------------------------
    def data_files(self, split: str, data_root: Path | None) -> list[Path]:
        rows, files, _ = self._load(split, data_root)
        extra = []
        if self.shots > 0:
            train = self._hf_split("train")
            extra = [f for f in (train[1] if train else []) if f not in files]
        return list(files) + extra

    def examples(self, split: str, data_root: Path | None) -> Iterator[Example]:
        rows, files, origin = self._load(split, data_root)
        self.resolved_source = origin
        deviations = ["examples in source-file order (official benchmark.py shuffles them before taking N)"]
        fixed_shots: list[tuple[str, str]] | None = None
        if self.shots > 0:
            train = self._train_shots()
            if train is not None:
                fixed_shots = train[0]
                self.shot_pool = f"train split, default_rng({self.seed}).permutation, first {self.shots}"
            else:
                if len(rows) <= self.shots:
                    raise ValueError(f"{self.name}: {len(rows)} rows cannot give {self.shots} shots besides the "
                                     f"article")
                self.shot_pool = (f"no train split available: shots from the evaluated file itself, "
                                  f"default_rng({self.seed}).permutation order, skipping the evaluated article")
                deviations.append("shots drawn from the test file (excluding the evaluated article), not the train "
                                  "split")
        else:
            self.shot_pool = "0-shot"
        if self.stop:
            deviations.append(f"generation stops at {list(self.stop)} (official code: EOS or max tokens only)")
        self.deviations = tuple(deviations)
        perm = shot_permutation(len(rows), self.seed) if self.shots > 0 and fixed_shots is None else []
        for idx, r in enumerate(rows):
            if fixed_shots is not None:
                shots, shot_ids = fixed_shots, ["train"] * len(fixed_shots)
            elif self.shots > 0:
                pick = [j for j in perm[: self.shots + 1] if j != idx][: self.shots]
                shots = [(rows[j]["doc"], rows[j]["summary"]) for j in pick]
                shot_ids = [rows[j]["id"] for j in pick]
            else:
                shots, shot_ids = [], []
            yield Example(id=r["id"], data={
                "article": r["doc"], "summary": r["summary"], "reference": " " + r["summary"],
                "prompt": build_prompt(r["doc"], shots), "shot_ids": shot_ids})

    def request(self, example: Example) -> GenerationRequest:
        return GenerationRequest(prompt=example.data["prompt"], max_new_tokens=self.max_new_tokens, stop=self.stop)

    def score(self, example: Example, output: Generation) -> dict[str, float]:
        pred = output.text.lower()
        ref = example.data["reference"].lower()
        # rougeLsum splits sentences on the original casing (the splitter needs capitals); rouge-score lowercases.
        return {"rouge1": rouge_n_f(pred, ref, 1), "rouge2": rouge_n_f(pred, ref, 2),
                "rougeL": rouge_n_f(pred, ref, "L"),  # type: ignore[arg-type]
                "rougeLsum": rouge_lsum_f(output.text, example.data["reference"])}


class CnnDmTask(_SummarizationTask):
    """CNN/DailyMail 3.0.0 test, 1-shot by default (LayerSkip Table 3)."""

    name = "cnn_dm"
    doc_field = "article"
    sum_field = "highlights"
    hf_repos = ("abisee/cnn_dailymail", "cnn_dailymail")
    hf_config = "3.0.0"
    jsonl_env = "REPRO_CNNDM_JSONL"
    sources = ("auto", "frank", "jsonl", "hf")

    def __init__(self, shots: int = 1, max_new_tokens: int = 512, source: str = "auto",
                 seed: int = DEFAULT_SHOT_SEED, stop: Sequence[str] | None = None):
        super().__init__(shots=shots, max_new_tokens=max_new_tokens, source=source, seed=seed, stop=stop)

    def _local_source(self, data_root: Path | None):
        try:
            path = FRANK_CNNDM.resolve(data_root, download=False)
        except DataMissing:
            if self.source == "frank":
                raise
            return None
        got = sha256_file(path)
        if got != FRANK_CNNDM.sha256:
            raise DataMissing(f"{path}: sha256 {got} is not the vendored FRANK CNN/DM file ({FRANK_CNNDM.sha256})")
        return self._normalise(_read_jsonl(path), str(path)), [path], "frank:cnndm-test-250"

    def _missing_message(self, data_root: Path | None) -> str:
        where = f"the data root {data_root}" if data_root else "the data root (REPRO_DATA_DIR)"
        return (f"cnn_dm: no data: run `repro data fetch cnn_dm` (loads abisee/cnn_dailymail 3.0.0 into the HF "
                f"datasets cache {hf_data.datasets_cache()}; copy that cache to an offline machine), or put "
                f"{FRANK_CNNDM.relpath} under {where}, or set REPRO_CNNDM_JSONL to a JSONL with article/highlights")


class XsumTask(_SummarizationTask):
    """XSUM (Narayan et al., 2018) test, 0-shot by default (LayerSkip Table 3)."""

    name = "xsum"
    doc_field = "document"
    sum_field = "summary"
    hf_repos = ("EdinburghNLP/xsum", "xsum")
    hf_config = None
    jsonl_env = "REPRO_XSUM_JSONL"

    def __init__(self, shots: int = 0, max_new_tokens: int = 512, source: str = "auto",
                 seed: int = DEFAULT_SHOT_SEED, stop: Sequence[str] | None = None):
        super().__init__(shots=shots, max_new_tokens=max_new_tokens, source=source, seed=seed, stop=stop)

    def _missing_message(self, data_root: Path | None) -> str:
        return (f"xsum: the XSUM test split is not in the HF datasets cache {hf_data.datasets_cache()}: run "
                f"`repro data fetch xsum` (loads EdinburghNLP/xsum there; copy that cache to an offline machine), "
                f"or set REPRO_XSUM_JSONL to a JSONL of the official test split with fields id, document, summary")
