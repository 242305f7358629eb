"""The look every report figure shares: style, panel grid, model colours and legend, axes, saving.

Figures are drawn on `matplotlib.figure.Figure` (no pyplot state, Agg canvas) and saved without a
Software stamp, so equal tables give equal PNG bytes.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from diffscale.report.analysis import model_labels, model_order, teachers
from diffscale.report.metrics import higher_is_better, metric_name

DPI = 150
PANEL_SIZE = (4.2, 3.2)  # inches per facet
LEGEND_WIDTH = 1.8  # inches added on the right for the figure legend
# Sequential by size, small models light, large ones dark, with a hue change at every step so that five sizes and
# their overlapping CI bands stay apart (flare's were five shades of one red); viridis's palest yellow, which
# vanishes on white, is left out.
PALETTE, PALETTE_RANGE = "viridis", (0.85, 0.0)
COST_LABELS = {
    "relative_cost": "sampling cost (normalized model cost x steps)",
    "gflops_per_image": "denoiser GFLOPs per image (incl. CFG and search)",
    "total_gflops_per_image": "total GFLOPs per image (denoiser + verifier)",
    "nfe_per_image": "NFEs per image (CFG pair = 2, incl. search)",
    "seconds_per_image": "seconds per image",
}


def styled(draw):
    """Draw under one seaborn style without touching the caller's global matplotlib settings."""

    @functools.wraps(draw)
    def styled_draw(*args, **kwargs):
        with sns.axes_style("whitegrid"), sns.plotting_context("notebook", font_scale=0.8):
            return draw(*args, **kwargs)

    return styled_draw


def panels(nrows: int, ncols: int, legend: bool = True, **subplots) -> tuple[Figure, list]:
    """A figure of `nrows` x `ncols` facets, with room on the right for a legend unless `legend` is False."""
    width = PANEL_SIZE[0] * ncols + (LEGEND_WIDTH if legend else 0)
    figure = Figure(figsize=(width, PANEL_SIZE[1] * nrows + 0.5), layout="constrained")
    return figure, figure.subplots(nrows, ncols, squeeze=False, **subplots)


def save(figure: Figure, out_dir: Path, name: str) -> Path:
    """Write `out_dir/name.png` and return its path."""
    path = Path(out_dir) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


# Line style of each ladder of `analysis.model_distillation`: a distilled model is drawn dashed.
DASHES = {"undistilled": "", "distilled": (4, 2)}


def model_palette(df: pd.DataFrame) -> dict[str, tuple]:
    """One colour per model, by size, identical in every figure of a table; a distilled model whose teacher is in
    the table takes its teacher's colour (and a dashed line), so each pair reads as one size."""
    distilled = teachers(df)
    models = model_order(df)
    own = [m for m in models if distilled.get(m) not in models]
    colours = dict(zip(own, size_colours(len(own))))
    return {m: colours[distilled[m]] if m not in colours else colours[m] for m in models}


def size_colours(count: int) -> list[tuple]:
    """`count` colours of `PALETTE` over `PALETTE_RANGE`, smallest size first."""
    return [tuple(colormaps[PALETTE](x)[:3]) for x in np.linspace(*PALETTE_RANGE, count)]


def model_legend(
    figure: Figure, df: pd.DataFrame, palette: dict, extra: tuple = (), models: list[str] | None = None
) -> None:
    """The figure's legend on the right: one entry per model of `df` (or `models`), then `extra` handles."""
    labels, distilled = model_labels(df), teachers(df)
    handles = [Line2D([], [], color=palette[m], marker="o", label=labels[m],
                      linestyle="--" if m in distilled else "-") for m in models or model_order(df)]
    figure.legend(handles=[*handles, *extra], title="model (params)", loc="outside right center", frameon=False)


def metric_axis_label(metric: str) -> str:
    """'FID (lower is better)'."""
    return f"{metric_name(metric)} ({'higher' if higher_is_better(metric) else 'lower'} is better)"


def log_x(ax, ticks=None) -> None:
    """Log x axis with plain numbers; the data's own values as ticks when they are few."""
    ax.set_xscale("log")
    if ticks is not None and len(ticks) <= 8:
        ax.set_xticks(ticks)
    else:
        ax.xaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def log_y_if_wide(ax, frame: pd.DataFrame, metric: str) -> None:
    """Distances such as FID can span orders of magnitude across a ladder; a log axis keeps all models legible."""
    values = frame.loc[frame["metric"] == metric, "value"] if "metric" in frame else frame["value"]
    if not higher_is_better(metric) and len(values) and values.min() > 0 and values.max() / values.min() > 10:
        ax.set_yscale("log")
