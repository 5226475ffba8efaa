"""From per-example records to run metrics: means with bootstrap CIs, plus a task's dataset-level metrics.

Records are the unit of truth. A dataset-level metric (COCO AP, mIoU, macro mAP) is recomputed
from the records alone by ``task.aggregate``; its confidence interval, when the task asks for one,
comes from resampling examples (images) with replacement and re-running the aggregate.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from suite.stats import bootstrap_ci

Records = Sequence[Mapping[str, Any]]


def mean_metrics(records: Records, seed: int) -> dict[str, dict[str, Any]]:
    """Mean of every per-example score and statistic, with a bootstrap CI over examples."""
    out: dict[str, dict[str, Any]] = {}
    for section in ("scores", "stats"):
        names = sorted({k for r in records for k in r.get(section, {})})
        for name in names:
            vals = [float(r[section][name]) for r in records if name in r.get(section, {})]
            if not vals:
                continue
            ci = bootstrap_ci(vals, seed=seed)
            out[name] = {"value": sum(vals) / len(vals), "ci95": list(ci) if ci else None, "n": len(vals),
                         "kind": "score" if section == "scores" else "stat"}
    return out


def bootstrap_dataset(fn: Callable[[list], Mapping[str, float]], records: Records, *, resamples: int, seed: int,
                      level: float = 0.95) -> dict[str, list[float]]:
    """Percentile CI of each dataset-level metric under resampling of examples with replacement.

    A resample may hold an example twice; ``fn`` sees both copies (ids made unique by a suffix), as the
    bootstrap requires.
    """
    rng = np.random.default_rng(seed)
    n = len(records)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        idx = rng.integers(0, n, size=n)
        sample = [{**records[i], "id": f"{records[i]['id']}#{j}"} for j, i in enumerate(idx)]
        for name, v in fn(sample).items():
            draws.setdefault(name, []).append(float(v))
    full = fn(list(records))
    alpha = (1.0 - level) / 2.0
    # Basic (reverse-percentile) interval: set-level metrics are biased under resampling (a resample that
    # repeats positives and drops a rare class moves mAP up), so the percentile interval can miss the
    # estimate altogether; reflecting the quantiles around the estimate cancels that shift.
    return {k: [2 * float(full[k]) - float(np.quantile(v, 1 - alpha)), 2 * float(full[k]) - float(np.quantile(v, alpha))]
            for k, v in draws.items()}


def summarize(records: Records, task: Any, seed: int) -> dict[str, dict[str, Any]]:
    """Run metrics: per-example means (+CI) and, if the task defines ``aggregate``, its dataset-level metrics."""
    out = mean_metrics(records, seed)
    agg = getattr(task, "aggregate", None)
    if agg is None or not records:
        return out
    values = agg(list(records))
    resamples = int(getattr(task, "bootstrap_resamples", 0) or 0)
    cis = bootstrap_dataset(agg, records, resamples=resamples, seed=seed) if resamples and len(records) > 1 else {}
    for name, v in values.items():
        if name in out:
            raise ValueError(f"task {task.name}: dataset metric {name!r} collides with a per-example metric")
        out[name] = {"value": float(v), "ci95": cis.get(name), "n": len(records), "kind": "dataset",
                     "ci_method": f"basic bootstrap over examples, {resamples} resamples" if name in cis
                     else "not computed (dataset-level metric)"}
    return out
