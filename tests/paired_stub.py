"""A stand-in for `report.comparisons.Comparisons.difference` over a metrics table's values, for readings tests
that need a paired CI of a chosen width without per-image files."""

from __future__ import annotations

import pandas as pd


class PairedByValue:
    """a minus b from the table's `value`s, with a paired CI of +-`half_width` (`None`: no per-image data)."""

    def __init__(self, table: pd.DataFrame, half_width: float | None):
        self.values, self.half_width = table.set_index(["metric", "cell"])["value"], half_width

    def difference(self, metric: str, a: str, b: str) -> dict | None:
        if self.half_width is None:
            return None
        d = self.values[metric, a] - self.values[metric, b]
        low, high = d - self.half_width, d + self.half_width
        return {"difference": d, "diff_ci_low": low, "diff_ci_high": high, "beyond_noise": not low <= 0 <= high}
