"""Per-image values and features of scored cells, and what they make possible: paired differences of two
cells, the real-image floor of FID and KID, and the N-extrapolated FID (FID-infinity).

Every cell draws image i from the same (seed, prompt, replicate), so two cells of a prompt set are paired:
the difference of two cells is bootstrapped over *prompts*, with the same resampled prompts for both,
which removes the per-prompt variation the two cells share (unpaired CIs keep it). Scoring writes, beside
each cell's score rows, `<cell>.safetensors` (features of the FID layer and each per-image metric, keyed by
(prompt_id, replicate)) and, once per block, `reference.safetensors` (the reference set's FID statistics,
and for toy prompt sets its features and those of held-out real images).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from safetensors import safe_open

from diffscale.lazy import lazy_import
from diffscale.metrics.bootstrap import bootstrap_ci

# Loaded on first use: a scoring job that finds its cells in the cache reads only the names below.
torch = lazy_import("torch")
safetensors_torch = lazy_import("safetensors.torch")
fidelity = lazy_import("diffscale.metrics.fidelity")

PER_IMAGE_SUFFIX = ".safetensors"
REFERENCE_FILE = "reference.safetensors"
FEATURES = "features"
VALUE_PREFIX = "metric/"
# Set statistics bootstrapped from features; every other metric with per-image values is a mean.
SET_METRICS = ("fid", "kid")
# FID-infinity (Chong and Forsyth 2020): FID at this many subset sizes from N/FID_INF_SMALLEST to N.
FID_INF_POINTS = 15
FID_INF_SMALLEST = 4


@dataclass(frozen=True)
class PerImage:
    """One cell's per-image data: keys (prompt_id, replicate), features (or None) and metric values."""

    keys: list[tuple]
    features: torch.Tensor | None
    values: dict[str, np.ndarray]

    def save(self, path: Path) -> None:
        tensors = {VALUE_PREFIX + name: torch.from_numpy(np.asarray(v, dtype=np.float64)) for name, v in self.values.items()}
        if self.features is not None:
            # The extractors compute in float32: storing float32 loses nothing.
            tensors[FEATURES] = self.features.float().contiguous()
        safetensors_torch.save_file(tensors, str(path), metadata={"keys": json.dumps([list(k) for k in self.keys])})

    @classmethod
    def load(cls, path: Path) -> PerImage:
        tensors = safetensors_torch.load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            keys = [tuple(k) for k in json.loads(handle.metadata()["keys"])]
        features = tensors[FEATURES].double() if FEATURES in tensors else None
        values = {name[len(VALUE_PREFIX):]: t.numpy() for name, t in tensors.items() if name.startswith(VALUE_PREFIX)}
        return cls(keys, features, values)


@dataclass(frozen=True)
class Reference:
    """A prompt set's reference: FID statistics, and (toy) reference and held-out real features."""

    statistics: dict
    feature_space: str
    features: torch.Tensor | None = None
    held_out: torch.Tensor | None = None

    def save(self, path: Path) -> None:
        tensors = {"mu": torch.from_numpy(np.asarray(self.statistics["mu"], dtype=np.float64)),
                   "sigma": torch.from_numpy(np.asarray(self.statistics["sigma"], dtype=np.float64))}
        for name in ("features", "held_out"):
            if getattr(self, name) is not None:
                tensors[name] = getattr(self, name).float().contiguous()
        safetensors_torch.save_file(tensors, str(path), metadata={"feature_space": self.feature_space})

    @cached_property
    def kid_kernel(self) -> np.ndarray:
        """KID's reference x reference kernel, computed once for every paired difference against it."""
        return fidelity.kid_reference_kernel(self.features)

    @classmethod
    def load(cls, path: Path) -> Reference:
        t = safetensors_torch.load_file(str(path))
        with safe_open(str(path), "pt") as handle:
            space = handle.metadata()["feature_space"]
        return cls({"mu": t["mu"].numpy(), "sigma": t["sigma"].numpy()}, space,
                   t["features"].double() if "features" in t else None, t["held_out"].double() if "held_out" in t else None)


def aligned(a: PerImage, b: PerImage) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Indices into a and b of the images both cells drew (same prompt and replicate), and the positions of
    each prompt's images in that common order: the units the paired bootstrap resamples."""
    where_b = {key: i for i, key in enumerate(b.keys)}
    common = [(i, where_b[key]) for i, key in enumerate(a.keys) if key in where_b]
    if not common:
        raise ValueError("the two cells share no (prompt_id, replicate): they are not paired")
    ia, ib = (np.array(side) for side in zip(*common))
    prompts: dict = {}
    for position, i in enumerate(ia):
        prompts.setdefault(a.keys[i][0], []).append(position)
    return ia, ib, [np.array(p) for p in prompts.values()]


def statistic(metric: str, cell: PerImage, reference: Reference | None, seed: int) -> Callable[[np.ndarray], float]:
    """The cell's value of `metric` on a subset of its images (indices), as its scoring computes it."""
    if metric == "fid":
        return fidelity.ResampledFID(cell.features, reference.statistics)
    if metric == "kid":
        return fidelity.ResampledKID(cell.features, reference.features, 5, seed, reference.kid_kernel)
    values = cell.values[metric]
    return lambda idx: float(values[idx].mean())


def has_metric(cell: PerImage, metric: str, reference: Reference | None) -> bool:
    if metric == "fid":
        return cell.features is not None and reference is not None
    if metric == "kid":
        return cell.features is not None and reference is not None and reference.features is not None
    return metric in cell.values


def paired_difference(metric: str, a: PerImage, b: PerImage, reference: Reference | None, resamples: int,
                      confidence: float, seed: int) -> dict:
    """Value of a minus value of b, with the percentile CI of the difference when the prompts are resampled
    with replacement, the same prompts for both cells. Set statistics (FID, KID) take only the spread
    from the bootstrap, centred on the full-sample difference, as their per-cell CIs do."""
    ia, ib, groups = aligned(a, b)
    stat_a, stat_b = statistic(metric, a, reference, seed), statistic(metric, b, reference, seed)

    def difference(prompts: np.ndarray) -> float:
        positions = np.concatenate([groups[p] for p in prompts])
        return stat_a(ia[positions]) - stat_b(ib[positions])

    value = difference(np.arange(len(groups)))
    center = value if metric in SET_METRICS else None
    low, high = bootstrap_ci(len(groups), difference, resamples, confidence, seed, center)
    return {"difference": value, "diff_ci_low": low, "diff_ci_high": high, "prompts": len(groups)}


def unpaired_difference(metric: str, a: PerImage, b: PerImage, reference: Reference | None, resamples: int,
                        confidence: float, seed: int) -> dict:
    """The same difference with each cell resampled independently: what per-cell CIs amount to. Only for
    showing what pairing buys (tests, the power analysis)."""
    ia, ib, groups = aligned(a, b)
    stat_a, stat_b = statistic(metric, a, reference, seed), statistic(metric, b, reference, seed)
    k = len(groups)

    def difference(draw: np.ndarray) -> float:
        first, second = draw[:k] % k, draw[k:] % k
        return (stat_a(ia[np.concatenate([groups[p] for p in first])])
                - stat_b(ib[np.concatenate([groups[p] for p in second])]))

    # One draw of 2k units from [0, 2k): the first k index a's prompts, the rest (mod k) b's.
    value = stat_a(ia) - stat_b(ib)
    center = value if metric in SET_METRICS else None
    low, high = bootstrap_ci(2 * k, difference, resamples, confidence, seed, center)
    return {"difference": value, "diff_ci_low": low, "diff_ci_high": high, "prompts": k}


def floor(metric: str, reference: Reference, n: int, resamples: int, confidence: float, seed: int) -> dict:
    """FID or KID of n held-out real images (a seeded subset) against the reference set: the value a
    perfect generator would get at this N, with its bootstrap CI."""
    if reference.held_out is None or len(reference.held_out) < n:
        raise ValueError(f"the floor at N={n} needs at least {n} held-out real images")
    subset = reference.held_out[np.sort(np.random.default_rng(seed).choice(len(reference.held_out), n, replace=False))]
    real = PerImage([(i, 0) for i in range(n)], subset, {})
    stat = statistic(metric, real, reference, seed)
    value = stat(np.arange(n))
    low, high = bootstrap_ci(n, stat, resamples, confidence, seed, value)
    return {"value": value, "ci_low": low, "ci_high": high, "n": n}


def extrapolate(sizes: np.ndarray, values: np.ndarray) -> float:
    """Intercept of the least-squares line of values against 1/N: the value at N = infinity."""
    slope, intercept = np.polyfit(1.0 / np.asarray(sizes, dtype=np.float64), np.asarray(values, dtype=np.float64), 1)
    return float(intercept)


def fid_infinity(features: torch.Tensor, statistics: dict, seed: int, points: int = FID_INF_POINTS) -> float:
    """Chong and Forsyth's FID-infinity: FID of random subsets at `points` sizes from N/4 to N, a line in
    1/N, extrapolated to 1/N = 0. Removes the bias that grows as N shrinks and differs between models."""
    n = len(features)
    sizes = np.unique(np.linspace(max(n // FID_INF_SMALLEST, 2), n, points).astype(int))
    rng = np.random.default_rng(seed)
    fid = fidelity.ResampledFID(features, statistics)
    values = [fid(rng.choice(n, size, replace=False)) for size in sizes]
    return extrapolate(sizes, np.array(values))
