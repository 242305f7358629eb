"""Percentile bootstrap confidence intervals, over the images of a cell."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_ci(
    n: int, statistic: Callable[[np.ndarray], float], resamples: int, confidence: float, seed: int
) -> tuple[float, float]:
    """CI of `statistic(indices)` when the n images are resampled with replacement."""
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_with_ci(values: np.ndarray, resamples: int, confidence: float, seed: int) -> dict:
    values = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_ci(len(values), lambda idx: values[idx].mean(), resamples, confidence, seed)
    return {"value": float(values.mean()), "ci_low": low, "ci_high": high, "n": len(values)}
