"""Percentile bootstrap confidence intervals, over the images of a cell."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    n: int, statistic: Callable[[np.ndarray], float], resamples: int, confidence: float, seed: int,
    center: float | None = None,
) -> tuple[float, float]:
    """Percentile CI of `statistic(indices)` when the n images are resampled with replacement.

    With `center` (the full-sample estimate), the bootstrap distribution is shifted to have its mean
    there: set statistics such as FID and KID are biased upward by the duplicates a resample holds, so
    only their spread is taken from the bootstrap.
    """
    rng = np.random.default_rng(seed)
    values = np.array([statistic(rng.integers(0, n, n)) for _ in range(resamples)])
    if center is not None:
        values += center - values.mean()
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def mean_with_ci(values: np.ndarray, resamples: int, confidence: float, seed: int) -> dict:
    values = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_ci(len(values), lambda idx: values[idx].mean(), resamples, confidence, seed)
    return {"value": float(values.mean()), "ci_low": low, "ci_high": high, "n": len(values)}
