"""The numbers of search over initial noises (Ma et al.): lines, verifier gains, equal compute, budget effects.

Pure pandas functions of the tidy table, one prompt set at a time, like `report.analysis`. Every search
configuration is read against its *baseline*: the no-search cell of the same model, sampler, steps,
guidance and prompt set (budget 0). A search *line* is one (model, sampler, steps, guidance, algorithm,
verifier) followed over its budgets, starting at the baseline.
"""

from __future__ import annotations

import math

import pandas as pd

from diffscale.report.analysis import (
    COST_TOLERANCE,
    best_first,
    model_order,
    rank_correlation,
    require_one_prompt_set,
    without_search,
)
from diffscale.report.metrics import higher_is_better, known_metrics

# Algorithms in reading order; unknown ones follow alphabetically.
ALGORITHM_ORDER = ("random", "zero-order", "paths", "fk-steering")
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


def search_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Cells that spend NFEs on search (algorithm other than "none")."""
    return df[df["search"] != "none"]


def has_search(df: pd.DataFrame) -> bool:
    """Whether any cell of the table searches."""
    return bool((df["search"] != "none").any())


def _ordered(values, preferred) -> list:
    """Distinct values: the preferred ones in their order, then the rest sorted."""
    present = list(dict.fromkeys(values))
    return [v for v in preferred if v in present] + sorted(v for v in present if v not in preferred)


def algorithm_order(values) -> list[str]:
    """Distinct algorithms in reading order (ALGORITHM_ORDER, then the rest sorted)."""
    return _ordered(values, ALGORITHM_ORDER)


def verifier_order(values) -> list[str]:
    """Distinct verifiers: those with a metric of their own first, then the rest sorted."""
    return _ordered(values, tuple(VERIFIER_METRIC))


def metric_order(metrics) -> list[str]:
    """Distinct metrics in the report's reading order, unknown ones sorted after."""
    return _ordered(metrics, known_metrics())


def algorithms(df: pd.DataFrame) -> list[str]:
    return algorithm_order(search_cells(df)["search"])


def verifiers(df: pd.DataFrame) -> list[str]:
    return verifier_order(search_cells(df)["verifier"])


def fair_cost(df: pd.DataFrame) -> str:
    """Total (denoiser + verifier) GFLOPs per image when the table has them, else denoiser GFLOPs."""
    if FAIR_COST in df and df[FAIR_COST].notna().any():
        return FAIR_COST
    return "gflops_per_image"


def _sorted_lines(frame: pd.DataFrame, extra: list[str]) -> pd.DataFrame:
    """Deterministic order: model by size, algorithm, verifier, sampler, steps, guidance, then `extra`."""
    rank = {
        "model": {m: i for i, m in enumerate(model_order(frame))} if len(frame) else {},
        "search": {a: i for i, a in enumerate(algorithm_order(frame["search"]))},
        "verifier": {v: i for i, v in enumerate(verifier_order(frame["verifier"]))},
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
    order = {"verifier": verifier_order(scored["verifier"]), "search": algorithm_order(scored["search"])}
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
               "outcome", "within_noise", "cost_unit", "cell", "big_cell"]
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
                       "big_model": big_model, "big_params": sizes[big_model], "cost_unit": cost, "cell": small.cell}
                affordable = mine[mine[cost] <= getattr(small, cost) * (1 + COST_TOLERANCE)]
                if affordable.empty:
                    rows.append(row | {"outcome": "unaffordable", "within_noise": False})
                    continue
                big = best_first(affordable, metric, [cost, "steps", "guidance"]).iloc[0]
                advantage = sign * (small.value - big["value"])
                overlap = not (small.ci_high < big["ci_low"] or big["ci_high"] < small.ci_low)
                rows.append(row | {
                    "big_sampler": big["sampler"], "big_steps": big["steps"], "big_guidance": big["guidance"],
                    "big_cost": big[cost], "big_value": big["value"], "big_ci_low": big["ci_low"],
                    "big_ci_high": big["ci_high"], "big_cell": big["cell"], "advantage": advantage,
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
