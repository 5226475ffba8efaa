"""CNN/DM and XSUM adapters: LayerSkip's prompt format, shot selection, sources and ROUGE scoring."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from suite.data import DataMissing
from suite.interfaces import Generation
from suite.registry import TASKS
from suite.tasks.summarization import (
    FRANK_CNNDM,
    STOP,
    CnnDmTask,
    XsumTask,
    build_prompt,
    format_shot,
    shot_permutation,
)

REAL_ROOT = os.environ.get("REPRO_DATA_DIR")
needs_real = pytest.mark.skipif(
    not REAL_ROOT or not (Path(REAL_ROOT) / FRANK_CNNDM.relpath).is_file(),
    reason="needs the real FRANK CNN/DM file: set REPRO_DATA_DIR to a data root holding "
           "cnn_dailymail/frank_cnndm_test_250.jsonl")

ARTICLES = [
    {"id": "a1", "article": "The cat sat on the mat in Paris on Monday.",
     "highlights": "Cat sits on mat .\nIn Paris ."},
    {"id": "a2", "article": "Stocks fell sharply as markets reacted to the news.",
     "highlights": "Stocks fell sharply ."},
    {"id": "a3", "article": "A new bridge opened across the river yesterday.", "highlights": "New bridge opens ."},
]


@pytest.fixture()
def isolated(tmp_path, monkeypatch):
    """No HF caches, no user JSONL, no data root: only what each test sets up."""
    for var in ("REPRO_CNNDM_JSONL", "REPRO_XSUM_JSONL", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "REPRO_DATA_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("REPRO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture()
def three_articles(isolated, monkeypatch):
    path = isolated / "cnndm3.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ARTICLES))
    monkeypatch.setenv("REPRO_CNNDM_JSONL", str(path))
    return path


def test_prompt_format_matches_layerskip_data_py():
    assert build_prompt("Body.") == "Article: Body.\nSummary:"
    assert format_shot("Shot.", "One .\nTwo .") == "Article: Shot.\nSummary: One .Two .\n"
    assert build_prompt("Body.", [("Shot.", "One .\nTwo .")]) == (
        "Article: Shot.\nSummary: One .Two .\n\nArticle: Body.\nSummary:")
    two = build_prompt("B", [("S1", "x"), ("S2", "y")])
    assert two == "Article: S1\nSummary: x\nArticle: S2\nSummary: y\n\nArticle: B\nSummary:"


def test_shot_permutation_is_datasets_shuffle_order():
    import numpy as np

    assert shot_permutation(10, 42) == [int(i) for i in np.random.default_rng(42).permutation(10)]
    assert shot_permutation(10, 42) == shot_permutation(10, 42)


def test_registry_names():
    assert TASKS.get("cnn_dm") is CnnDmTask and TASKS.get("xsum") is XsumTask


def test_one_shot_prefix_excludes_the_article_itself(three_articles):
    task = CnnDmTask()
    exs = list(task.examples("test", None))
    assert [e.id for e in exs] == ["a1", "a2", "a3"]  # file order
    first = ARTICLES[shot_permutation(3, 42)[0]]["id"]
    for ex in exs:
        assert len(ex.data["shot_ids"]) == 1 and ex.id not in ex.data["shot_ids"]
        assert ex.data["prompt"].count(ex.data["article"]) == 1
        assert ex.data["prompt"].endswith(f"\n\nArticle: {ex.data['article']}\nSummary:")
        # everyone shares the first row of the permutation, except that row itself
        assert ex.data["shot_ids"] == ([first] if ex.id != first else [ARTICLES[shot_permutation(3, 42)[1]]["id"]])
    shot = next(r for r in ARTICLES if r["id"] == exs[0].data["shot_ids"][0])
    shot_summary = shot["highlights"].replace("\n", "")
    assert exs[0].data["prompt"].startswith(f"Article: {shot['article']}\nSummary: {shot_summary}\n\n")
    assert "evaluated file itself" in task.shot_pool
    assert any("shots drawn from the test file" in d for d in task.deviations)
    assert task.resolved_source.startswith("jsonl:") and task.data_files("test", None) == [three_articles]


def test_request_reference_and_zero_shot(three_articles):
    task = CnnDmTask(shots=0, max_new_tokens=64)
    ex = next(iter(task.examples("test", None)))
    req = task.request(ex)
    assert req.prompt == f"Article: {ARTICLES[0]['article']}\nSummary:"
    assert req.max_new_tokens == 64 and req.stop == STOP == ("\nArticle:", "\n\n")
    assert ex.data["reference"] == " " + ARTICLES[0]["highlights"]
    assert CnnDmTask(stop=[]).request(ex).stop == ()


def test_reference_scores_one_and_empty_scores_zero(three_articles):
    task = CnnDmTask()
    for ex in task.examples("test", None):
        s = task.score(ex, Generation(ex.data["summary"]))
        assert s == {"rouge1": 1.0, "rouge2": 1.0, "rougeL": 1.0, "rougeLsum": 1.0}
        assert task.score(ex, Generation(""))["rouge2"] == 0.0
    ex = next(iter(task.examples("test", None)))
    assert task.score(ex, Generation(ex.data["summary"].upper()))["rouge2"] == 1.0  # lowercased


def test_bad_source_and_split(three_articles):
    with pytest.raises(ValueError, match="source"):
        CnnDmTask(source="web")
    with pytest.raises(ValueError, match="split"):
        list(CnnDmTask().examples("train", None))


def test_missing_data_says_where_to_get_it(isolated):
    with pytest.raises(DataMissing, match="repro data fetch cnn_dm.*frank_cnndm_test_250.jsonl.*REPRO_CNNDM_JSONL"):
        list(CnnDmTask().examples("test", None))
    with pytest.raises(DataMissing) as e:
        list(XsumTask().examples("test", None))
    msg = str(e.value)
    assert "\n" not in msg and "EdinburghNLP/xsum" in msg and "REPRO_XSUM_JSONL" in msg
    assert "repro data fetch xsum" in msg


def test_frank_checksum_is_verified(isolated):
    root = isolated / "data"
    (root / "cnn_dailymail").mkdir(parents=True)
    (root / FRANK_CNNDM.relpath).write_text("".join(json.dumps(r) + "\n" for r in ARTICLES))
    with pytest.raises(DataMissing, match="sha256"):
        list(CnnDmTask(source="frank").examples("test", root))


def test_xsum_from_user_jsonl(isolated, monkeypatch):
    path = isolated / "xsum.jsonl"
    rows = [{"id": "35232142", "document": "Doc one.", "summary": "One."},
            {"id": "40143035", "document": "Doc two.", "summary": "Two."}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("REPRO_XSUM_JSONL", str(path))
    task = XsumTask()
    exs = list(task.examples("test", None))
    assert [e.id for e in exs] == ["35232142", "40143035"]
    assert exs[0].data["prompt"] == "Article: Doc one.\nSummary:" and exs[0].data["reference"] == " One."
    assert task.shots == 0 and task.shot_pool == "0-shot" and task.data_files("test", None) == [path]


def _offline_hf_cache(tmp: Path, repo_id: str, config: str, splits: dict[str, dict[str, list]]) -> Path:
    """What `repro data fetch cnn_dm` leaves behind: the splits prepared by `datasets` in its cache.

    Built from a local copy of the hub repo's layout (parquet files + the README's config table), then
    stored under the cache name `datasets` gives the hub repo id, so the offline load finds it.
    """
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    from suite import hf_data

    local = tmp / "hub-copy" / repo_id.split("/")[-1]
    (local / config).mkdir(parents=True)
    for split, cols in splits.items():
        pq.write_table(pa.table(cols), local / config / f"{split}-00000-of-00001.parquet")
    files = "".join(f"  - split: {s}\n    path: {config}/{s}-*\n" for s in splits)
    (local / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{files}---\n")
    cache = hf_data.datasets_cache()
    with hf_data._offline(True):
        for split in splits:
            datasets.load_dataset(str(local), config, split=split, cache_dir=str(cache))
    (cache / local.name).rename(cache / repo_id.replace("/", "___"))
    return cache


def test_hf_datasets_cache_with_train_shots(isolated):
    test = {"article": [r["article"] for r in ARTICLES], "highlights": [r["highlights"] for r in ARTICLES],
            "id": [r["id"] for r in ARTICLES]}
    train = {"article": [f"Train article {i}." for i in range(7)], "highlights": [f"T{i} .\nmore ." for i in range(7)],
             "id": [f"t{i}" for i in range(7)]}
    cache = _offline_hf_cache(isolated, "abisee/cnn_dailymail", "3.0.0", {"test": test, "train": train})
    task = CnnDmTask(source="hf")
    exs = list(task.examples("test", None))
    k = shot_permutation(7, 42)[0]
    expect = f"Article: Train article {k}.\nSummary: T{k} .more .\n\n"
    assert all(e.data["prompt"].startswith(expect) for e in exs)
    assert [e.id for e in exs] == ["a1", "a2", "a3"] and task.resolved_source == "hf-cache:abisee/cnn_dailymail:test"
    assert "train split" in task.shot_pool
    files = task.data_files("test", None)
    assert [p.name for p in files] == ["cnn_dailymail-test.arrow", "cnn_dailymail-train.arrow"]
    assert all(cache in p.parents for p in files)


def test_hf_source_without_cache_says_how_to_fetch(isolated):
    with pytest.raises(DataMissing, match="repro data fetch cnn_dm"):
        list(CnnDmTask(source="hf").examples("test", None))


@needs_real
def test_real_frank_file(monkeypatch):
    from rouge_score import rouge_scorer

    monkeypatch.delenv("REPRO_CNNDM_JSONL", raising=False)
    root = Path(REAL_ROOT)
    task = CnnDmTask()
    exs = list(task.examples("test", root))
    raw = [json.loads(line) for line in open(root / FRANK_CNNDM.relpath, encoding="utf-8")]
    assert len(exs) == 250 and [e.id for e in exs] == [r["id"] for r in raw]
    assert task.resolved_source == "frank:cnndm-test-250"
    assert task.data_files("test", root) == [root / FRANK_CNNDM.relpath]
    for ex in exs:
        assert ex.id not in ex.data["shot_ids"] and ex.data["prompt"].count("Article: ") == 2
    ex, row = exs[0], raw[0]
    assert task.score(ex, Generation(row["highlights"]))["rouge2"] == 1.0
    assert task.score(ex, Generation(row["highlights_lowercased_variant"]))["rouge2"] == 1.0
    bart = row["system_summaries"]["bart"]
    want = rouge_scorer.RougeScorer(["rouge2"], use_stemmer=False).score(row["highlights"], bart)["rouge2"].fmeasure
    got = task.score(ex, Generation(bart))["rouge2"]
    assert got == pytest.approx(want, abs=1e-12)
    assert got == pytest.approx(0.3037974683544304, abs=1e-12)  # pinned: article dm-test-008aa71f…, BART summary


def test_runner_records_settings_and_scores(three_articles, tmp_path):
    from suite.runner import execute
    from suite.spec import RunSpec

    oracle = execute(RunSpec.make("cnn_dm", "oracle", "smoke", limit=2), root=tmp_path / "runs", data_root=None,
                     quiet=True).metrics
    assert oracle["n_examples"] == 2 and oracle["main_metric"] == "rouge2"
    assert oracle["metrics"]["rouge2"]["value"] == 1.0 and oracle["metrics"]["rougeL"]["value"] == 1.0
    settings = oracle["task_settings"]
    assert settings["shots"] == 1 and settings["resolved_source"].startswith("jsonl:")
    assert "evaluated file itself" in settings["shot_pool"] and settings["deviations"]
    assert list(oracle["provenance"]["data_files"]) == [str(three_articles)]
    wrong = execute(RunSpec.make("cnn_dm", "wrong", "smoke"), root=tmp_path / "runs", data_root=None,
                    quiet=True).metrics
    assert wrong["n_examples"] == 3 and wrong["metrics"]["rouge2"]["value"] == 0.0
