"""Paired comparisons of the cells the report compares, the FID/KID floor and the FID ranking checks.

The tidy table holds one value and CI per cell; whether model A beats model B at a budget is a question
about the *difference* of two cells, which scoring's per-image data answer (`metrics.paired`): the
difference is bootstrapped over prompts with the same resampled prompts for both cells. A winner is
called only where that CI excludes zero. Without per-image data (a table from elsewhere) the columns
stay empty and the readings fall back to the cells' own CIs.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import pandas as pd

from diffscale.metrics import paired
from diffscale.report.analysis import model_order
from diffscale.report.metrics import higher_is_better
from diffscale.seeds import derive_seed

DIFFERENCE = ["difference", "diff_ci_low", "diff_ci_high", "beyond_noise"]


class Comparisons:
    """The per-image data of a study's scored blocks, read on first use, and the study's bootstrap settings."""

    def __init__(self, score_dirs, resamples: int, confidence: float, seed: int):
        self.resamples, self.confidence, self.seed = resamples, confidence, seed
        self.files = {path.name[: -len(paired.PER_IMAGE_SUFFIX)]: path for folder in map(Path, score_dirs)
                      for path in sorted(folder.glob(f"*{paired.PER_IMAGE_SUFFIX}")) if path.name != paired.REFERENCE_FILE}
        # Each is asked for the same cells by several tables (a crossover is also a budget's winner).
        self.per_image = lru_cache(maxsize=None)(self._per_image)
        self.reference = lru_cache(maxsize=None)(self._reference)
        self.difference = lru_cache(maxsize=None)(self._difference)
        self.floor = lru_cache(maxsize=None)(self._floor)

    def _per_image(self, cell: str) -> paired.PerImage | None:
        return paired.PerImage.load(self.files[cell]) if cell in self.files else None

    def _reference(self, cell: str) -> paired.Reference | None:
        """The reference of the cell's prompt set, as its block's scoring wrote it."""
        path = self.files[cell].parent / paired.REFERENCE_FILE if cell in self.files else None
        return paired.Reference.load(path) if path is not None and path.exists() else None

    def available(self, metric: str, *cells: str) -> bool:
        return all(isinstance(c, str) and self.per_image(c) is not None
                   and paired.has_metric(self.per_image(c), metric, self.reference(c)) for c in cells)

    def _difference(self, metric: str, a: str, b: str) -> dict | None:
        """a minus b in `metric` with the paired CI; None without per-image data for both, and for KID, whose
        bootstrap (torch-fidelity's random subsets) costs seconds a resample pair: KID keeps the cells' CIs."""
        if metric == "kid" or not self.available(metric, a, b):
            return None
        result = paired.paired_difference(metric, self.per_image(a), self.per_image(b), self.reference(a),
                                          self.resamples, self.confidence, derive_seed(self.seed, "paired", metric, a, b))
        return result | {"beyond_noise": not (result["diff_ci_low"] <= 0 <= result["diff_ci_high"])}

    def _floor(self, metric: str, cell: str) -> dict | None:
        """FID or KID of held-out real images at the cell's N against the same reference and extractor."""
        reference = self.reference(cell) if cell in self.files else None
        n = len(self.per_image(cell).keys) if cell in self.files else 0
        if reference is None or reference.held_out is None or len(reference.held_out) < n or metric not in paired.SET_METRICS:
            return None  # no held-out images (real prompt sets), or fewer than the cell's N
        return paired.floor(metric, reference, n, self.resamples, self.confidence, derive_seed(self.seed, "floor", metric, n))

    def fid_infinity(self, cell: str) -> float | None:
        if not self.available("fid", cell):
            return None
        return paired.fid_infinity(self.per_image(cell).features, self.reference(cell).statistics,
                                   derive_seed(self.seed, "fid-infinity", cell))

    def feature_space(self, cell: str) -> str | None:
        reference = self.reference(cell) if cell in self.files else None
        return None if reference is None else reference.feature_space


def with_differences(table: pd.DataFrame, comparisons: Comparisons | None, metric: str | None, a: str,
                     b: str, where: pd.Series | None = None) -> pd.DataFrame:
    """`table` with the paired difference of the cells in columns `a` minus `b` (in `metric`, or the row's
    `metric` column) and whether its CI excludes zero, for the rows `where` selects (default: all); NaN/None
    elsewhere and where either cell lacks per-image data."""
    rows = []
    for i, (_, row) in enumerate(table.iterrows()):
        name = row["metric"] if metric is None else metric
        wanted = comparisons is not None and (where is None or bool(where.iloc[i]))
        result = comparisons.difference(name, row[a], row[b]) if wanted else None
        rows.append({k: (result or {}).get(k, math.nan if k != "beyond_noise" else None) for k in DIFFERENCE})
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows, columns=DIFFERENCE)], axis=1)


def called(table: pd.DataFrame) -> pd.Series:
    """Rows whose winner is called: the paired CI excludes zero (unknown without per-image data: False)."""
    return table["beyond_noise"].map(lambda v: v is True)


def ranking_checks(table1: pd.DataFrame, comparisons: Comparisons | None) -> pd.DataFrame:
    """Per model of the Table 1 analogue: FID and KID with their floors, FID-infinity, and the rank by each.

    Needs per-image features of the Table 1 analogue's cells; empty otherwise.
    """
    columns = ["model", "params", "fid", "fid_floor", "fid_infinity", "kid", "kid_floor", "kid_floor_ci_high",
               "rank_fid", "rank_kid", "rank_fid_infinity", "feature_space"]
    if comparisons is None or "fid" not in table1 or not all(comparisons.available("fid", c) for c in table1["cell"]):
        return pd.DataFrame(columns=columns)
    rows = []
    for row in table1.itertuples(index=False):
        cell = row.cell
        fid_floor, kid_floor = comparisons.floor("fid", cell), comparisons.floor("kid", cell)
        rows.append({"model": row.model, "params": row.params, "fid": row.fid,
                     "fid_floor": fid_floor["value"] if fid_floor else math.nan,
                     "fid_infinity": comparisons.fid_infinity(cell), "kid": getattr(row, "kid", math.nan),
                     "kid_floor": kid_floor["value"] if kid_floor else math.nan,
                     "kid_floor_ci_high": kid_floor["ci_high"] if kid_floor else math.nan,
                     "feature_space": comparisons.feature_space(cell)})
    out = pd.DataFrame(rows)
    lower_first = {"fid": "rank_fid", "kid": "rank_kid", "fid_infinity": "rank_fid_infinity"}
    for column, rank in lower_first.items():
        ascending = not higher_is_better(column if column != "fid_infinity" else "fid")
        out[rank] = out[column].rank(ascending=ascending, method="min")
    out = out.set_index("model").loc[model_order(out)].reset_index()
    return out[columns]


def kid_inside_floor(checks: pd.DataFrame) -> bool:
    """Every model's KID is within the CI of held-out real images' KID (the floor): KID cannot rank them."""
    return bool(checks["kid"].notna().all() and (checks["kid"] <= checks["kid_floor_ci_high"]).all())


def ranking_disagreements(checks: pd.DataFrame) -> list[str]:
    """The models whose rank by KID (unless every KID is inside its floor) or FID-infinity differs from their
    rank by FID."""
    out = []
    others = (("rank_fid_infinity", "FID-infinity"),) if kid_inside_floor(checks) else (
        ("rank_kid", "KID"), ("rank_fid_infinity", "FID-infinity"))
    for other, name in others:
        moved = checks[checks[other].notna() & (checks[other] != checks["rank_fid"])]
        if not moved.empty:
            out.append(f"by {name}: " + ", ".join(f"{r.model} {int(r.rank_fid)} -> {int(getattr(r, other))}"
                                                   for r in moved.itertuples()))
    return out
