"""The figures of search over initial noises (Ma et al.): one function per figure, like `report.figures`.

Each search figure colours a line by its algorithm and draws it in its verifier's line style and marker,
the same in every figure of a table; a cross marks the no-search baseline where each line starts.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from diffscale.report import style
from diffscale.report.analysis import (
    headline_metrics,
    model_labels,
    model_order,
    require_one_prompt_set,
    without_search,
)
from diffscale.report.metrics import higher_is_better, metric_name
from diffscale.report.search_analysis import (
    BASELINE_KEY,
    BUDGET_METRICS,
    BUDGET_VERIFIER,
    LINE,
    VERIFIER_METRIC,
    algorithm_order,
    algorithms,
    budget_effect,
    equal_compute,
    fair_cost,
    metric_order,
    search_lines,
    verifier_gains,
    verifier_metric_matrix,
    verifiers,
)

_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
_MARKERS = ["o", "s", "^", "D", "v", "P"]


def _styles(df: pd.DataFrame) -> tuple[dict, dict]:
    """Colour per algorithm and (line style, marker) per verifier, identical in every search figure."""
    algos, verifier_names = algorithms(df), verifiers(df)
    # Blue, orange, green, purple, ... of the colourblind palette: apart from each other and from the greys
    # that draw the bigger models in the equal-compute figure.
    base = sns.color_palette("colorblind")
    picks = [base[i] for i in (0, 1, 2, 4, 5, 9, 8, 3, 6)]
    colors = {a: picks[i % len(picks)] for i, a in enumerate(algos)}
    styles = {v: (_LINESTYLES[i % len(_LINESTYLES)], _MARKERS[i % len(_MARKERS)])
              for i, v in enumerate(verifier_names)}
    return colors, styles


def _search_legend(colors: dict, styles: dict, extra: list | None = None) -> tuple[list, list]:
    handles = [Line2D([], [], color="none", label="algorithm:")]
    handles += [Line2D([], [], color=c, linewidth=2, label=a) for a, c in colors.items()]
    handles += [Line2D([], [], color="none", label="verifier:")]
    handles += [Line2D([], [], color="0.3", linestyle=s, marker=m, markersize=4, label=v)
                for v, (s, m) in styles.items()]
    handles += [Line2D([], [], color="0.1", marker="X", linestyle="none", markersize=7, label="no search")]
    handles += extra or []
    return handles, [h.get_label() for h in handles]


def _draw_lines(ax, lines: pd.DataFrame, x: str, colors: dict, styles: dict, alpha: float = 0.9) -> None:
    """One line per search configuration from its baseline, and the baselines as crosses."""
    for _, line in lines.groupby(LINE, sort=False):
        line = line.sort_values("search_budget", kind="mergesort")
        search, verifier = line["search"].iloc[0], line["verifier"].iloc[0]
        linestyle, marker = styles[verifier]
        ax.plot(line[x], line["value"], color=colors[search], linestyle=linestyle, marker=marker, markersize=3.5,
                linewidth=1.2, alpha=alpha)
    baselines = lines[lines["search_budget"] == 0].drop_duplicates(BASELINE_KEY)
    ax.scatter(baselines[x], baselines["value"], marker="X", color="0.1", s=40, zorder=3)


@style.styled
def scaling_curves(
    df: pd.DataFrame, out_dir: Path, cost: str = "nfe_per_image", metrics: list[str] | None = None
) -> Path | None:
    """Each metric against cost per image for each searched model: a line per algorithm and verifier."""
    require_one_prompt_set(df)
    lines = search_lines(df, metrics)
    if cost not in lines or lines.empty:
        return None
    lines = lines[lines[cost].notna()]
    metrics = [m for m in (metrics or headline_metrics(lines)) if m in set(lines["metric"])]
    if not metrics or lines.empty:
        return None
    models = model_order(lines)
    colors, styles = _styles(lines)
    figure, axes = style.panels(len(metrics), len(models), sharex="col", sharey="row")
    labels = model_labels(df)
    for row, metric in enumerate(metrics):
        for column, model in enumerate(models):
            ax = axes[row][column]
            _draw_lines(ax, lines[(lines["metric"] == metric) & (lines["model"] == model)], cost, colors, styles)
            style.log_x(ax)
            style.log_y_if_wide(ax, lines, metric)
            ax.set_title(labels[model] if row == 0 else "")
            ax.set_xlabel(f"{style.COST_LABELS.get(cost, cost)} (log)" if row == len(metrics) - 1 else "")
            ax.set_ylabel(style.metric_axis_label(metric) if column == 0 else "")
    handles, names = _search_legend(colors, styles)
    figure.legend(handles, names, loc="outside right center", frameon=False)
    figure.suptitle(f"Search scaling: quality vs {style.COST_LABELS.get(cost, cost)} (lines start without search)")
    return style.save(figure, out_dir, f"search_scaling_{cost}")


@style.styled
def verifier_matrix_plot(df: pd.DataFrame, out_dir: Path) -> Path | None:
    """Verifier x metric heatmap of the relative gain over no search at the largest budget (positive = better).

    Boxed cells are a verifier's own metric (same network): the verifier-hacking diagonal.
    """
    require_one_prompt_set(df)
    matrix = verifier_metric_matrix(verifier_gains(df))
    if matrix.empty:
        return None
    limit = max(float(matrix.abs().max().max()), 0.01)
    shown = matrix.rename(columns=metric_name)
    figure = Figure(figsize=(1.8 + 1.15 * matrix.shape[1], 1.4 + 0.5 * matrix.shape[0]), layout="constrained")
    ax = figure.subplots()
    sns.heatmap(shown, annot=True, fmt="+.1%", cmap="RdYlGn", center=0, vmin=-limit, vmax=limit, linewidths=0.5,
                cbar_kws={"label": "relative change vs no search (+ = better)"}, ax=ax)
    for row, verifier in enumerate(matrix.index):
        own = VERIFIER_METRIC.get(verifier)
        if own in matrix.columns:
            column = list(matrix.columns).index(own)
            ax.add_patch(Rectangle((column, row), 1, 1, fill=False, edgecolor="0.1", linewidth=2))
    ax.set(xlabel="evaluation metric", ylabel="search verifier")
    ax.tick_params(axis="y", rotation=0)
    ax.tick_params(axis="x", rotation=30)
    figure.suptitle("Gain over no search at the largest budget (mean over models and algorithms)\n"
                    "boxed: the verifier's own network")
    return style.save(figure, out_dir, "search_verifier_matrix")


@style.styled
def equal_compute_plot(df: pd.DataFrame, out_dir: Path, metrics: list[str] | None = None) -> Path | None:
    """Small model + search vs bigger models without search, against total GFLOPs per image.

    Per searched smaller model (columns) and metric (rows): its search lines, and each bigger model's
    no-search configurations (faint points) with their best-within-budget step line.
    """
    require_one_prompt_set(df)
    cost = fair_cost(df)
    comparison = equal_compute(df, metrics, cost)
    comparison = comparison[comparison["outcome"] != "unaffordable"]
    if comparison.empty:
        return None
    metrics = [m for m in (metrics or headline_metrics(df)) if m in set(comparison["metric"])] or \
        metric_order(comparison["metric"].unique())[:1]
    small_models = model_order(df[df["model"].isin(comparison["model"])])
    lines = search_lines(df, metrics)
    lines = lines[lines[cost].notna()]
    colors, styles = _styles(lines)
    plain = without_search(df)
    plain = plain[plain["value"].notna() & plain[cost].notna()]
    labels = model_labels(df)
    figure, axes = style.panels(len(metrics), len(small_models), sharey="row")
    bigger = model_order(df[df["model"].isin(comparison["big_model"])])
    palette = dict(zip(bigger, sns.color_palette("Greys", len(bigger) + 1)[1:]))  # darker = bigger
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    for row, metric in enumerate(metrics):
        sign = 1 if higher_is_better(metric) else -1
        for column, small in enumerate(small_models):
            ax = axes[row][column]
            mine = lines[(lines["metric"] == metric) & (lines["model"] == small)]
            top = mine[cost].max() if not mine.empty else math.inf
            for big in [m for m in bigger if sizes[m] > sizes[small]]:
                points = plain[(plain["metric"] == metric) & (plain["model"] == big) & (plain[cost] <= top * 1.5)]
                if points.empty:
                    continue
                points = points.sort_values([cost, "cell"], kind="mergesort")
                ax.scatter(points[cost], points["value"], color=palette[big], alpha=0.4, s=12, linewidths=0)
                best = (sign * points["value"]).cummax() * sign
                ax.step(points[cost], best, where="post", color=palette[big], linewidth=1.8, alpha=0.9)
            _draw_lines(ax, mine, cost, colors, styles, alpha=0.8)
            style.log_x(ax)
            style.log_y_if_wide(ax, lines, metric)
            ax.set_title(f"{labels[small]} + search" if row == 0 else "")
            ax.set_xlabel(f"{style.COST_LABELS.get(cost, cost)} (log)" if row == len(metrics) - 1 else "")
            ax.set_ylabel(style.metric_axis_label(metric) if column == 0 else "")
    extra = [Line2D([], [], color="none", label="bigger model, no search:")]
    extra += [Line2D([], [], color=palette[m], linewidth=1.8, label=f"{labels[m]} best within cost") for m in bigger]
    handles, names = _search_legend(colors, styles, extra)
    figure.legend(handles, names, loc="outside right center", frameon=False)
    figure.suptitle("Small model + search vs bigger models without search at equal compute")
    return style.save(figure, out_dir, "search_equal_compute")


@style.styled
def budget_plot(df: pd.DataFrame, out_dir: Path, verifier: str = BUDGET_VERIFIER) -> Path | None:
    """FID and recall (diversity) against search budget with the oracle verifier, per algorithm, with CIs."""
    require_one_prompt_set(df)
    effect = budget_effect(df, verifier)
    if effect.empty or effect["search_budget"].max() <= 0:
        return None
    metrics = [m for m in BUDGET_METRICS if m in set(effect["metric"])]
    algos = algorithm_order(effect["search"])
    budgets = sorted(effect["search_budget"].unique())
    position = {b: i for i, b in enumerate(budgets)}
    palette = style.model_palette(df)
    models = model_order(effect)
    figure, axes = style.panels(len(metrics), len(algos), sharey="row")
    for row, metric in enumerate(metrics):
        for column, search in enumerate(algos):
            ax = axes[row][column]
            frame = effect[(effect["metric"] == metric) & (effect["search"] == search)]
            for _, line in frame.groupby(LINE, sort=False):
                line = line.sort_values("search_budget", kind="mergesort")
                shift = 0.06 * (models.index(line["model"].iloc[0]) - (len(models) - 1) / 2)
                x = line["search_budget"].map(position) + shift
                spread = [(line["value"] - line["ci_low"]).clip(lower=0),
                          (line["ci_high"] - line["value"]).clip(lower=0)]
                ax.errorbar(x, line["value"], yerr=spread, color=palette[line["model"].iloc[0]], marker="o",
                            markersize=4, capsize=3, linewidth=1.2)
            ax.set_xticks(range(len(budgets)), [f"{b:g}" if b else "none" for b in budgets])
            ax.set_title(f"{search} search" if row == 0 else "")
            ax.set_xlabel(f"search budget N ({verifier} verifier)" if row == len(metrics) - 1 else "")
            ax.set_ylabel(style.metric_axis_label(metric) + ("\n(diversity)" if metric == "recall" else "")
                          if column == 0 else "")
    style.model_legend(figure, df, palette, models=models)
    figure.suptitle(f"{' and '.join(metric_name(m) for m in metrics)} vs search budget with the {verifier} "
                    "verifier (bars: CI)")
    return style.save(figure, out_dir, f"search_budget_{verifier}")
