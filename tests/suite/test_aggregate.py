"""Run metrics from records: per-example means, a task's dataset-level aggregate, and its bootstrap CI."""
import pytest

from suite.aggregate import summarize


class _Ratio:
    """A dataset-level metric that is not a mean of per-example scores: sum(hits) / sum(total)."""

    name = "ratio"
    bootstrap_resamples = 200

    def aggregate(self, records):
        hits = sum(r["outputs"][0]["hits"] for r in records)
        total = sum(r["outputs"][0]["total"] for r in records)
        return {"pooled": hits / total}


def _records(pairs):
    return [{"id": f"e{i}", "outputs": [{"hits": h, "total": t}], "scores": {"acc": h / t}, "stats": {}}
            for i, (h, t) in enumerate(pairs)]


def test_dataset_metric_is_pooled_not_averaged():
    recs = _records([(1, 1), (0, 9)])
    m = summarize(recs, _Ratio(), seed=0)
    assert m["acc"]["value"] == pytest.approx(0.5)        # mean of per-example scores
    assert m["pooled"]["value"] == pytest.approx(0.1)     # 1 hit of 10, recomputed from the records alone
    assert m["pooled"]["kind"] == "dataset"


def test_dataset_bootstrap_ci_brackets_the_estimate_and_is_reproducible():
    recs = _records([(i % 3, 3) for i in range(40)])
    a, b = summarize(recs, _Ratio(), seed=1), summarize(recs, _Ratio(), seed=1)
    lo, hi = a["pooled"]["ci95"]
    assert lo < a["pooled"]["value"] < hi
    assert a["pooled"]["ci95"] == b["pooled"]["ci95"]
    assert "bootstrap" in a["pooled"]["ci_method"]


def test_without_resamples_the_record_says_not_computed():
    t = _Ratio()
    t.bootstrap_resamples = 0
    m = summarize(_records([(1, 2), (2, 2)]), t, seed=0)
    assert m["pooled"]["ci95"] is None and "not computed" in m["pooled"]["ci_method"]


def test_a_dataset_metric_may_not_shadow_a_per_example_one():
    class Clash(_Ratio):
        def aggregate(self, records):
            return {"acc": 0.0}

    with pytest.raises(ValueError, match="collides"):
        summarize(_records([(1, 2)]), Clash(), seed=0)
