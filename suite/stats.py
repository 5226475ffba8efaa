"""Estimators: bootstrap confidence intervals and the unbiased pass@k."""
from __future__ import annotations

from math import comb
from typing import Sequence

import numpy as np


def bootstrap_ci(values: Sequence[float], *, seed: int = 0, resamples: int = 1000,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap CI of the mean; None with fewer than two values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(resamples, x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1.0 - alpha))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased estimator 1 - C(n-c, k) / C(n, k) (Chen et al., 2021) for one problem."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples per problem, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)
