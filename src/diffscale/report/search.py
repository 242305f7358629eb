"""Search over initial noises (Ma et al.): scaling curves, verifiers vs metrics, equal-compute, budget effects.

The numbers are pure pandas functions of the tidy table (one prompt set at a time), the figures follow
`report.figures` (one PNG per function, None when there is nothing to draw) and the readings are sentences
generated from the numbers that say where this study agrees or differs with Ma et al., "Inference-Time
Scaling for Diffusion Models beyond Scaling Denoising Steps" (arXiv:2501.09732).

Every search configuration is read against its *baseline*: the no-search cell of the same model, sampler,
steps, guidance and prompt set (budget 0). A search *line* is one (model, sampler, steps, guidance,
algorithm, verifier) followed over its budgets, starting at the baseline.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from diffscale.report.analysis import (
    _COST_TOLERANCE,
    _best_first,
    headline_metrics,
    higher_is_better,
    metric_name,
    model_labels,
    model_order,
    primary_metric,
    rank_correlation,
    require_one_prompt_set,
    without_search,
)
from diffscale.report.figures import (
    COST_LABELS,
    _log_x,
    _log_y_if_wide,
    _metric_axis_label,
    _palette,
    _panels,
    _save,
    _styled,
)

MA = "Ma et al."
# Algorithms and metrics in reading order; unknown ones follow alphabetically.
ALGORITHM_ORDER = ("random", "zero-order", "paths", "fk-steering")
METRIC_ORDER = ("fid", "kid", "precision", "recall", "clip_score", "compositional_accuracy", "oracle_confidence")
# The metric computed by the same network as a verifier: searching with it inflates that metric.
VERIFIER_METRIC = {"oracle": "oracle_confidence", "clip": "clip_score"}
# A judge that no verifier uses: the yardstick against which verifier hacking is read.
INDEPENDENT_METRIC = "compositional_accuracy"
# Verifier hacking: the verifier's own metric gains at least HACKING_RATIO times the independent metric's
# gain, and at least HACKING_MARGIN more (relative changes, 0.05 = 5 percentage points).
HACKING_RATIO = 2.0
HACKING_MARGIN = 0.05
# Ma et al. show FID and diversity with an oracle verifier (IS); here the oracle classifier.
BUDGET_VERIFIER = "oracle"
BUDGET_METRICS = ("fid", "recall")
# The fair cost of a searched image: denoiser plus verifier GFLOPs.
FAIR_COST = "total_gflops_per_image"
BASELINE_KEY = ["model", "sampler", "steps", "guidance", "prompt_set"]
LINE = ["model", "sampler", "steps", "guidance", "search", "verifier", "prompt_set"]
_COSTS = ["nfe_per_image", "gflops_per_image", "verifier_gflops_per_image", "total_gflops_per_image"]
_SCORE = ["value", "ci_low", "ci_high", "n"]
_LINESTYLES = ["-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 3))]
_MARKERS = ["o", "s", "^", "D", "v", "P"]


# ---------------------------------------------------------------------------------------------- numbers


def search_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Cells that spend NFEs on search (algorithm other than "none")."""
    return df[df["search"] != "none"]


def has_search(df: pd.DataFrame) -> bool:
    return bool((df["search"] != "none").any())


def _ordered(values, preferred) -> list:
    """Distinct values: the preferred ones in their order, then the rest sorted."""
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def algorithms(df: pd.DataFrame) -> list[str]:
    return _ordered(search_cells(df)["search"], ALGORITHM_ORDER)


def verifiers(df: pd.DataFrame) -> list[str]:
    return _ordered(search_cells(df)["verifier"], tuple(VERIFIER_METRIC))


def metric_order(metrics) -> list[str]:
    return _ordered(metrics, METRIC_ORDER)


def fair_cost(df: pd.DataFrame) -> str:
    """Total (denoiser + verifier) GFLOPs per image when the table has them, else denoiser GFLOPs."""
    if FAIR_COST in df and df[FAIR_COST].notna().any():
        return FAIR_COST
    return "gflops_per_image"


def _sorted_lines(frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    """Deterministic order: model by size, algorithm, verifier, sampler, steps, guidance, then `extra`."""
    rank = {
        "model": {m: i for i, m in enumerate(model_order(frame))} if len(frame) else {},
        "search": {a: i for i, a in enumerate(_ordered(frame["search"], ALGORITHM_ORDER))},
        "verifier": {v: i for i, v in enumerate(_ordered(frame["verifier"], tuple(VERIFIER_METRIC)))},
    }
    if "metric" in frame:
        rank["metric"] = {m: i for i, m in enumerate(metric_order(frame["metric"]))}
    keys = [k for k in ["model", "search", "verifier", "sampler", "steps", "guidance", *extra] if k in frame]
    return frame.sort_values(
        keys, key=lambda column: column.map(rank[column.name]) if column.name in rank else column, kind="mergesort"
    ).reset_index(drop=True)


def search_lines(df: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """Every search line from its no-search baseline (budget 0) up to its largest budget, one row per metric.

    The baseline is repeated under each algorithm and verifier that starts from it. Lines without a
    baseline cell start at their smallest budget.
    """
    require_one_prompt_set(df)
    columns = [*LINE, "params", "search_budget", "metric", *[c for c in _COSTS if c in df], *_SCORE, "cell"]
    searched = search_cells(df)
    if metrics is not None:
        searched = searched[searched["metric"].isin(metrics)]
    searched = searched[searched["value"].notna()]
    if searched.empty:
        return pd.DataFrame(columns=columns)
    starts = searched[[*LINE, "metric"]].drop_duplicates()
    baselines = without_search(df).drop(columns=["search", "verifier"])
    baselines = starts.merge(baselines, on=[*BASELINE_KEY, "metric"], how="inner")
    lines = pd.concat([baselines[columns], searched[columns]], ignore_index=True)
    return _sorted_lines(lines, ["metric", "search_budget"])[columns]


def verifier_gains(df: pd.DataFrame) -> pd.DataFrame:
    """Each search line at its largest budget against its baseline, for every metric.

    `relative_gain` = (value - baseline) / |baseline|, signed so that positive is better (a falling FID
    gives a positive gain). NaN when the baseline is 0.
    """
    lines = search_lines(df)
    columns = [*LINE, "params", "search_budget", "metric", "baseline", "value", "relative_gain"]
    if lines.empty:
        return pd.DataFrame(columns=columns)
    baseline = lines[lines["search_budget"] == 0].set_index([*LINE, "metric"])["value"].rename("baseline")
    searched = lines[lines["search_budget"] > 0]
    largest = searched.groupby([*LINE, "metric"])["search_budget"].transform("max")
    top = searched[searched["search_budget"] == largest].join(baseline, on=[*LINE, "metric"], how="inner")
    sign = top["metric"].map(lambda m: 1.0 if higher_is_better(m) else -1.0)
    scale = top["baseline"].abs().where(top["baseline"] != 0)
    top = top.assign(relative_gain=sign * (top["value"] - top["baseline"]) / scale)
    return _sorted_lines(top, ["metric"])[columns]


def verifier_metric_matrix(gains: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Verifier x metric table of the mean relative gain (positive = better) from `verifier_gains`.

    Averaged over models and algorithms; `by=["search"]` keeps one row per algorithm and verifier.
    """
    index = [*(by or []), "verifier"]
    scored = gains.dropna(subset=["relative_gain"])
    if scored.empty:
        return pd.DataFrame()
    matrix = scored.pivot_table(index=index, columns="metric", values="relative_gain", aggfunc="mean")
    order = {"verifier": _ordered(scored["verifier"], tuple(VERIFIER_METRIC)),
             "search": _ordered(scored["search"], ALGORITHM_ORDER)}
    if len(index) == 1:
        matrix = matrix.reindex(order["verifier"])
    else:
        wanted = [key for key in pd.MultiIndex.from_product([order[i] for i in index]) if key in matrix.index]
        matrix = matrix.reindex(pd.MultiIndex.from_tuples(wanted, names=index))
    matrix = matrix[metric_order(matrix.columns)]
    matrix.columns.name = None
    return matrix


def verifier_hacking(matrix: pd.DataFrame) -> pd.DataFrame:
    """For each verifier that is also a metric: its own gain, the independent judge's gain, and a flag.

    `hacked`: the own metric gains at least HACKING_RATIO x and HACKING_MARGIN more than the independent
    metric (compositional accuracy), or the independent metric gets worse while the own one improves.
    `own_is_column_best`: no other verifier raises this metric more (Ma et al.: each verifier inflates
    its own metric most).
    """
    columns = ["verifier", "own_metric", "own_gain", "independent_metric", "independent_gain", "hacked",
               "own_is_column_best"]
    rows = []
    if INDEPENDENT_METRIC not in matrix:
        return pd.DataFrame(columns=columns)
    for verifier, own in VERIFIER_METRIC.items():
        if verifier not in matrix.index or own not in matrix:
            continue
        own_gain, independent = matrix.loc[verifier, own], matrix.loc[verifier, INDEPENDENT_METRIC]
        if pd.isna(own_gain) or pd.isna(independent):
            continue
        floor = max(independent, 0.0)
        hacked = own_gain > 0 and (independent < 0 or (
            own_gain >= HACKING_RATIO * floor and own_gain - floor >= HACKING_MARGIN))
        column = matrix[own].dropna()
        rows.append({"verifier": verifier, "own_metric": own, "own_gain": own_gain,
                     "independent_metric": INDEPENDENT_METRIC, "independent_gain": independent,
                     "hacked": bool(hacked), "own_is_column_best": bool(own_gain >= column.max())})
    return pd.DataFrame(rows, columns=columns)


def equal_compute(df: pd.DataFrame, metrics: list[str] | None = None, cost: str | None = None) -> pd.DataFrame:
    """Each search cell of a smaller model against the best no-search configuration of each bigger model.

    The bigger model may use any sampler, steps and guidance of the prompt set, as long as its `cost`
    (default: total GFLOPs per image, verifier included) is at most the searched cell's. `advantage` is
    signed so that positive means the small model with search is better; `outcome` is "wins", "loses",
    "ties" or "unaffordable" (the bigger model has no configuration within the budget); `within_noise`:
    the two confidence intervals overlap.
    """
    require_one_prompt_set(df)
    cost = cost or fair_cost(df)
    metrics = metric_order(df["metric"].unique()) if metrics is None else metrics
    config = ["model", "params", "sampler", "steps", "guidance"]
    columns = ["metric", *config, "search", "verifier", "search_budget", "cost", "value", "ci_low", "ci_high",
               *[f"big_{c}" for c in config], "big_cost", "big_value", "big_ci_low", "big_ci_high", "advantage",
               "outcome", "within_noise", "cost_unit"]
    plain = without_search(df)
    plain = plain[plain["value"].notna() & plain[cost].notna()]
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    rows = []
    for metric in metrics:
        searched = search_cells(df)
        searched = _sorted_lines(searched[(searched["metric"] == metric) & searched["value"].notna()
                                          & searched[cost].notna()], ["search_budget"])
        candidates = dict(tuple(plain[plain["metric"] == metric].groupby("model", sort=False)))
        sign = 1.0 if higher_is_better(metric) else -1.0
        for small in searched.itertuples(index=False):
            for big_model in [m for m in model_order(df) if sizes[m] > small.params and m in candidates]:
                mine = candidates[big_model]
                row = {"metric": metric, **{c: getattr(small, c) for c in config}, "search": small.search,
                       "verifier": small.verifier, "search_budget": small.search_budget, "cost": getattr(small, cost),
                       "value": small.value, "ci_low": small.ci_low, "ci_high": small.ci_high,
                       "big_model": big_model, "big_params": sizes[big_model], "cost_unit": cost}
                affordable = mine[mine[cost] <= getattr(small, cost) * (1 + _COST_TOLERANCE)]
                if affordable.empty:
                    rows.append(row | {"outcome": "unaffordable", "within_noise": False})
                    continue
                big = _best_first(affordable, metric, [cost, "steps", "guidance"]).iloc[0]
                advantage = sign * (small.value - big["value"])
                overlap = not (small.ci_high < big["ci_low"] or big["ci_high"] < small.ci_low)
                rows.append(row | {
                    "big_sampler": big["sampler"], "big_steps": big["steps"], "big_guidance": big["guidance"],
                    "big_cost": big[cost], "big_value": big["value"], "big_ci_low": big["ci_low"],
                    "big_ci_high": big["ci_high"], "advantage": advantage,
                    "outcome": "wins" if advantage > 0 else "loses" if advantage < 0 else "ties",
                    "within_noise": bool(overlap),
                })
    return pd.DataFrame(rows, columns=columns)


def equal_compute_summary(comparison: pd.DataFrame) -> pd.DataFrame:
    """Counts of wins, losses, ties and unaffordable budgets per metric, small model, bigger model and budget."""
    keys = ["metric", "model", "big_model", "search_budget"]
    columns = [*keys, "configurations", "wins", "losses", "ties", "unaffordable", "wins_beyond_noise",
               "best_advantage"]
    if comparison.empty:
        return pd.DataFrame(columns=columns)
    counted = comparison.assign(
        wins=comparison["outcome"] == "wins", losses=comparison["outcome"] == "loses",
        ties=comparison["outcome"] == "ties", unaffordable=comparison["outcome"] == "unaffordable",
        wins_beyond_noise=(comparison["outcome"] == "wins") & ~comparison["within_noise"].astype(bool),
    )
    summary = counted.groupby(keys, sort=False).agg(
        configurations=("outcome", "size"), wins=("wins", "sum"), losses=("losses", "sum"), ties=("ties", "sum"),
        unaffordable=("unaffordable", "sum"), wins_beyond_noise=("wins_beyond_noise", "sum"),
        best_advantage=("advantage", "max"),
    ).reset_index()
    return summary[columns]


def budget_effect(
    df: pd.DataFrame, verifier: str = BUDGET_VERIFIER, metrics: tuple[str, ...] = BUDGET_METRICS
) -> pd.DataFrame:
    """FID and recall (diversity) against search budget for one verifier: each line from budget 0 up, with CIs."""
    lines = search_lines(df, list(metrics))
    return lines[lines["verifier"] == verifier].reset_index(drop=True)


def budget_trend(effect: pd.DataFrame) -> pd.DataFrame:
    """Per line and metric of `budget_effect`: baseline, best budget, value at the largest budget, rank trend.

    `worse_at_largest`: the largest budget is worse than the best smaller budget (baseline included), i.e.
    the metric eventually worsens; `worse_than_baseline`: the largest budget is worse than no search;
    `beyond_noise`: the largest budget's interval excludes the best value (for a worsening) or the
    baseline (for a change against no search).
    """
    keys = [*LINE, "metric"]
    columns = [*keys, "budgets", "baseline", "best_budget", "best_value", "largest_budget", "largest_value",
               "largest_ci_low", "largest_ci_high", "spearman_budget", "worse_at_largest", "worse_than_baseline",
               "beyond_noise"]
    rows = []
    for key, line in effect.groupby(keys, sort=False):
        line = line.sort_values("search_budget", kind="mergesort")
        if len(line) < 2:
            continue
        metric = key[-1]
        sign = 1.0 if higher_is_better(metric) else -1.0
        best = line.loc[(sign * line["value"]).idxmax()]  # first (smallest) budget among ties
        last = line.iloc[-1]
        baseline = line["value"].iloc[0] if line["search_budget"].iloc[0] == 0 else math.nan
        worse = sign * (last["value"] - best["value"]) < 0
        reference = best["value"] if worse else baseline
        rows.append({
            **dict(zip(keys, key)), "budgets": len(line), "baseline": baseline,
            "best_budget": best["search_budget"], "best_value": best["value"],
            "largest_budget": last["search_budget"], "largest_value": last["value"],
            "largest_ci_low": last["ci_low"], "largest_ci_high": last["ci_high"],
            "spearman_budget": rank_correlation(line["search_budget"], line["value"]),
            "worse_at_largest": bool(worse),
            "worse_than_baseline": bool(sign * (last["value"] - baseline) < 0),
            "beyond_noise": bool(not pd.isna(reference) and not (last["ci_low"] <= reference <= last["ci_high"])),
        })
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------- figures


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


@_styled
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
    figure, axes = _panels(len(metrics), len(models), sharex="col", sharey="row")
    labels = model_labels(df)
    for row, metric in enumerate(metrics):
        for column, model in enumerate(models):
            ax = axes[row][column]
            _draw_lines(ax, lines[(lines["metric"] == metric) & (lines["model"] == model)], cost, colors, styles)
            _log_x(ax)
            _log_y_if_wide(ax, lines, metric)
            ax.set_title(labels[model] if row == 0 else "")
            ax.set_xlabel(f"{COST_LABELS.get(cost, cost)} (log)" if row == len(metrics) - 1 else "")
            ax.set_ylabel(_metric_axis_label(metric) if column == 0 else "")
    handles, names = _search_legend(colors, styles)
    figure.legend(handles, names, loc="outside right center", frameon=False)
    figure.suptitle(f"Search scaling: quality vs {COST_LABELS.get(cost, cost)} (lines start without search)")
    return _save(figure, out_dir, f"search_scaling_{cost}")


@_styled
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
    return _save(figure, out_dir, "search_verifier_matrix")


@_styled
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
    figure, axes = _panels(len(metrics), len(small_models), sharey="row")
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
            _log_x(ax)
            _log_y_if_wide(ax, lines, metric)
            ax.set_title(f"{labels[small]} + search" if row == 0 else "")
            ax.set_xlabel(f"{COST_LABELS.get(cost, cost)} (log)" if row == len(metrics) - 1 else "")
            ax.set_ylabel(_metric_axis_label(metric) if column == 0 else "")
    extra = [Line2D([], [], color="none", label="bigger model, no search:")]
    extra += [Line2D([], [], color=palette[m], linewidth=1.8, label=f"{labels[m]} best within cost") for m in bigger]
    handles, names = _search_legend(colors, styles, extra)
    figure.legend(handles, names, loc="outside right center", frameon=False)
    figure.suptitle("Small model + search vs bigger models without search at equal compute")
    return _save(figure, out_dir, "search_equal_compute")


@_styled
def budget_plot(df: pd.DataFrame, out_dir: Path, verifier: str = BUDGET_VERIFIER) -> Path | None:
    """FID and recall (diversity) against search budget with the oracle verifier, per algorithm, with CIs."""
    require_one_prompt_set(df)
    effect = budget_effect(df, verifier)
    if effect.empty or effect["search_budget"].max() <= 0:
        return None
    metrics = [m for m in BUDGET_METRICS if m in set(effect["metric"])]
    algos = _ordered(effect["search"], ALGORITHM_ORDER)
    budgets = sorted(effect["search_budget"].unique())
    position = {b: i for i, b in enumerate(budgets)}
    palette = _palette(df)
    models = model_order(effect)
    figure, axes = _panels(len(metrics), len(algos), sharey="row")
    for row, metric in enumerate(metrics):
        for column, search in enumerate(algos):
            ax = axes[row][column]
            frame = effect[(effect["metric"] == metric) & (effect["search"] == search)]
            for index, (_, line) in enumerate(frame.groupby(LINE, sort=False)):
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
            ax.set_ylabel(_metric_axis_label(metric) + ("\n(diversity)" if metric == "recall" else "")
                          if column == 0 else "")
    labels = model_labels(df)
    handles = [Line2D([], [], color=palette[m], marker="o", label=labels[m]) for m in models]
    figure.legend(handles=handles, title="model (params)", loc="outside right center", frameon=False)
    figure.suptitle(f"{' and '.join(metric_name(m) for m in metrics)} vs search budget with the {verifier} "
                    "verifier (bars: CI)")
    return _save(figure, out_dir, f"search_budget_{verifier}")


# ---------------------------------------------------------------------------------------------- readings


def _num(value: float) -> str:
    if pd.isna(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _pct(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:+.1%}"


def _line_label(row) -> str:
    return f"{row['search']} x{int(row['search_budget'])} by {row['verifier']}"


def scaling_readings(df: pd.DataFrame, cost: str = "nfe_per_image") -> list[str]:
    """Per model and headline metric: baseline, best search configuration at the largest budget, and Ma et al.'s
    algorithm ranking (random search best on text-to-image) checked on the independent metric."""
    lines = search_lines(df)
    if lines.empty:
        return []
    labels = model_labels(df)
    gains = verifier_gains(df)
    sentences = []
    for metric in headline_metrics(lines):
        name = metric_name(metric)
        parts = []
        for model in model_order(lines):
            top = gains[(gains["metric"] == metric) & (gains["model"] == model)].dropna(subset=["relative_gain"])
            if top.empty:
                continue
            best = top.sort_values(["relative_gain"], ascending=False, kind="mergesort").iloc[0]
            improved = int((top["relative_gain"] > 0).sum())
            parts.append(
                f"for {labels[model]} it goes from {_num(best['baseline'])} without search to {_num(best['value'])} "
                f"with {_line_label(best)} ({_pct(best['relative_gain'])}); {improved} of {len(top)} search "
                "configurations improve on no search at their largest budget"
            )
        if parts:
            sentences.append(f"{_capitalized(name)}: {'; '.join(parts)}.")
    judge = INDEPENDENT_METRIC if INDEPENDENT_METRIC in set(gains["metric"]) else primary_metric(lines)
    ranking = (gains[gains["metric"] == judge].dropna(subset=["relative_gain"])
               .groupby("search", sort=False)["relative_gain"].mean())
    if len(ranking) > 1:
        ranking = ranking.reindex(_ordered(ranking.index, ALGORITHM_ORDER)).sort_values(ascending=False,
                                                                                      kind="mergesort")
        order = ", ".join(f"{a} ({_pct(g)})" for a, g in ranking.items())
        rivals = [a for a in ("zero-order", "paths") if a in ranking.index]
        claim = ""
        if "random" in ranking.index and rivals:
            beaten = [a for a in rivals if ranking["random"] > ranking[a]]
            verdict = ("agrees with" if len(beaten) == len(rivals) else "partly agrees with" if beaten
                       else "differs from")
            claim = (f"Random search beats {' and '.join(beaten) or 'neither ' + ' nor '.join(rivals)} here: this "
                     f"{verdict} {MA}, who find random search better than zero-order search and search over paths on "
                     "text-to-image at their budget.")
        sentences.append(f"Mean gain in {metric_name(judge)} at the largest budget by algorithm, best first: {order}. "
                         f"{claim}".strip())
    return sentences


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def verifier_readings(matrix: pd.DataFrame, hacking: pd.DataFrame) -> list[str]:
    """The biggest gain, verifier hacking (own metric vs the independent judge) and metrics that get worse."""
    if matrix.empty:
        return []
    stacked = matrix.stack().rename("gain").reset_index()
    stacked.columns = ["verifier", "metric", "gain"]
    best = stacked.sort_values("gain", ascending=False, kind="mergesort").iloc[0]
    sentences = [f"The biggest gain over no search at the largest budget is {_pct(best['gain'])} in "
                 f"{metric_name(best['metric'])} when searching with the {best['verifier']} verifier."]
    for row in hacking.itertuples(index=False):
        own, judge = metric_name(row.own_metric), metric_name(row.independent_metric)
        if row.hacked:
            sentences.append(
                f"Verifier hacking: searching with {row.verifier} raises {own} (the same network) by "
                f"{_pct(row.own_gain)} but the independent {judge} by only {_pct(row.independent_gain)}.")
        else:
            sentences.append(
                f"No sign of hacking for {row.verifier}: its own {own} changes by {_pct(row.own_gain)} and the "
                f"independent {judge} by {_pct(row.independent_gain)}.")
    if INDEPENDENT_METRIC not in matrix:
        sentences.append(f"The table has no {metric_name(INDEPENDENT_METRIC)}, the judge that no verifier uses, so "
                         "verifier hacking cannot be read against an independent metric.")
    if not hacking.empty:
        diagonal = hacking["own_is_column_best"]
        named = ", ".join(f"{r.verifier} -> {metric_name(r.own_metric)}" for r in hacking.itertuples(index=False))
        verdict = ("agrees with" if diagonal.all() else "partly agrees with" if diagonal.any() else "differs from")
        sentences.append(
            f"Each verifier raises its own metric more than any other verifier does in {int(diagonal.sum())} of "
            f"{len(hacking)} cases ({named}): this {verdict} {MA}'s finding that each verifier inflates its own "
            "metric most (verifier hacking).")
    worse = stacked[stacked["gain"] < 0].sort_values("gain", kind="mergesort")
    if worse.empty:
        sentences.append("No metric gets worse with any verifier at the largest budget.")
    else:
        listed = ", ".join(f"{metric_name(r.metric)} with {r.verifier} ({_pct(r.gain)})"
                           for r in worse.itertuples(index=False))
        sentences.append(f"Metrics that get worse than without search: {listed}.")
    return sentences


def equal_compute_readings(df: pd.DataFrame, comparison: pd.DataFrame) -> list[str]:
    """Per metric and searched smaller model: at which budgets it beats the largest model's best no-search
    configuration within the same cost, and whether that agrees with Ma et al."""
    if comparison.empty:
        return []
    labels = model_labels(df)
    unit = "total GFLOPs per image" if comparison["cost_unit"].iloc[0] == FAIR_COST else "denoiser GFLOPs per image"
    sentences = []
    summary = equal_compute_summary(comparison)
    for metric in metric_order(comparison["metric"].unique()):
        if metric not in headline_metrics(df):
            continue
        name = metric_name(metric)
        for small in model_order(df[df["model"].isin(comparison["model"])]):
            mine = comparison[(comparison["metric"] == metric) & (comparison["model"] == small)]
            if mine.empty:
                continue
            biggest = model_order(df[df["model"].isin(mine["big_model"])])[-1]
            against = summary[(summary["metric"] == metric) & (summary["model"] == small)
                              & (summary["big_model"] == biggest)]
            per_budget = "; ".join(
                f"at budget {int(r.search_budget)} it wins {int(r.wins)} of {int(r.configurations)}"
                + (f" ({int(r.wins_beyond_noise)} beyond the CIs)" if r.wins else "")
                + (f", {int(r.unaffordable)} below the cheapest {biggest} configuration" if r.unaffordable else "")
                for r in against.itertuples(index=False))
            pairs = mine[(mine["big_model"] == biggest) & mine["advantage"].notna()]
            if pairs.empty:
                sentences.append(f"{_capitalized(name)}: {labels[biggest]} has no configuration within the {unit} of "
                                 f"any search configuration of {labels[small]}, so they cannot be compared.")
                continue
            wins = pairs[pairs["outcome"] == "wins"]
            budgets_won = sorted(set(wins["search_budget"].astype(int)))
            budgets_lost = sorted(set(pairs["search_budget"].astype(int)) - set(budgets_won))
            if not budgets_won:
                verdict = "beats it at no budget"
            elif budgets_lost:
                verdict = (f"beats it with some configuration at budget{'s' * (len(budgets_won) > 1)} "
                           f"{', '.join(map(str, budgets_won))} and with none at budget{'s' * (len(budgets_lost) > 1)} "
                           f"{', '.join(map(str, budgets_lost))}")
            else:
                verdict = f"beats it at every budget ({', '.join(map(str, budgets_won))})"
            text = (f"{_capitalized(name)}, {labels[small]} + search vs the best no-search configuration of "
                    f"{labels[biggest]} within the same {unit}: {per_budget}; so the small model + search {verdict}.")
            if not wins.empty:
                best = wins.sort_values(["advantage", "cost"], ascending=[False, True], kind="mergesort").iloc[0]
                text += (f" Its largest win: {_line_label(best)} ({name} {_num(best['value'])} at {_num(best['cost'])} "
                         f"GFLOPs) vs {labels[biggest]} with {best['big_sampler']} {int(best['big_steps'])} steps, cfg "
                         f"{best['big_guidance']:g} ({_num(best['big_value'])} at {_num(best['big_cost'])} GFLOPs).")
            beyond = int(((pairs["outcome"] == "wins") & ~pairs["within_noise"].astype(bool)).sum())
            if wins.empty:
                text += (f" This differs from {MA}, who find smaller models with search beating larger ones "
                         "without search at equal compute.")
            else:
                text += (f" This agrees with {MA}, who find smaller models with search beating larger ones without "
                         f"search at equal compute" + ("." if beyond else
                                                       ", though every win here is within the confidence intervals."))
            sentences.append(text)
    return sentences


def budget_readings(trend: pd.DataFrame, verifier: str = BUDGET_VERIFIER) -> list[str]:
    """Does FID worsen and recall fall as the oracle-verifier budget grows (Ma et al.: diversity collapse)?"""
    if trend.empty:
        return []
    sentences = []
    fid = trend[trend["metric"] == "fid"]
    if not fid.empty:
        worse = fid[fid["worse_at_largest"]]
        listed = ", ".join(f"{r.model} {r.search} (best at budget {_num(r.best_budget)}: {_num(r.best_value)}, "
                           f"{_num(r.largest_value)} at {_num(r.largest_budget)})"
                           for r in worse.itertuples(index=False))
        beyond = int(worse["beyond_noise"].sum())
        verdict = ("agrees with" if len(worse) * 2 > len(fid) else "partly agrees with" if len(worse)
                   else "differs from")
        claim = "who see FID worsen at large budgets of random search with an oracle (IS) verifier"
        # Baseline + one budget cannot show FID improving first and worsening later.
        conclusion = (f"This {verdict} {MA}, {claim}." if (fid["budgets"] > 2).any() else
                      f"Each line has a single search budget, too few to test {MA}'s finding ({claim}).")
        sentences.append(
            f"With the {verifier} verifier, FID at the largest budget is worse than at a smaller budget in "
            f"{len(worse)} of {len(fid)} search lines" + (f" ({listed}; {beyond} beyond the CI)" if len(worse) else "")
            + f", and worse than without search in {int(fid['worse_than_baseline'].sum())}. {conclusion}")
    recall = trend[(trend["metric"] == "recall") & trend["baseline"].notna()]
    if not recall.empty:
        falls = recall[recall["largest_value"] < recall["baseline"]]
        changes = ", ".join(f"{r.model} {r.search} {_num(r.baseline)} -> {_num(r.largest_value)}"
                            for r in recall.itertuples(index=False))
        beyond = int((falls["beyond_noise"]).sum())
        diversity = ("agrees with" if len(falls) * 2 > len(recall) else "partly agrees with" if len(falls)
                     else "differs from")
        sentences.append(
            f"Recall (diversity) at the largest budget is below no search in {len(falls)} of {len(recall)} lines "
            f"({changes}; {beyond} beyond the CI). This {diversity} {MA}'s explanation that oracle search worsens "
            "FID through a loss of diversity.")
    elif not fid.empty:
        sentences.append("The table has no recall with a no-search baseline, so diversity loss cannot be checked "
                         "here.")
    return sentences


def models_note(df: pd.DataFrame) -> str:
    """Which models were searched, for section notes."""
    searched = search_cells(df)
    labels = model_labels(df)
    return ", ".join(labels[m] for m in model_order(searched))


__all__ = [
    "algorithms", "budget_effect", "budget_plot", "budget_readings", "budget_trend", "equal_compute",
    "equal_compute_plot", "equal_compute_readings", "equal_compute_summary", "fair_cost", "has_search",
    "models_note", "scaling_curves", "scaling_readings", "search_cells", "search_lines",
    "verifier_gains", "verifier_hacking", "verifier_matrix_plot", "verifier_metric_matrix", "verifier_readings",
    "verifiers",
]
