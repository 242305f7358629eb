"""The study's headline numbers and curves, in the forms DVC shows: `dvc exp show`, `dvc metrics diff` and
`dvc plots diff` compare them across experiments.

`headline.json` holds, per prompt set, each headline metric of each model at the reference steps (no search,
at the primary metric's best guidance), the budgets at which the best model by the primary metric changes (Mei
et al.'s crossovers), per metric how many crossovers there are and, with per-image data, how many of them the
paired CI calls, and the mean relative gain of each search algorithm at its largest budget. `plots/<prompt set>-*.csv` are the curves: the
best value of each model against its sampling cost, and the joint frontier against GFLOPs per image. Numbers come from the
same analysis functions as the report page.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from diffscale.atomic import atomic_directory, write_text
from diffscale.report import analysis, search_analysis
from diffscale.report.comparisons import Comparisons, called, with_differences


def _finite(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 6)


def crossovers_called(best: pd.DataFrame, comparisons: Comparisons, metric: str) -> int:
    """How many of the crossovers of `best` (a best-model-per-budget table) the paired CI of the difference calls."""
    paired = with_differences(analysis.crossovers(best), comparisons, metric, "to_cell", "from_cell")
    return int(called(paired).sum())


def crossover_counts(plain: pd.DataFrame, comparisons: Comparisons | None) -> dict:
    """Per headline metric (each choosing its own guidance and winners), how many size crossovers there are and how
    many of them the paired CI calls: a crossover FID cannot resolve at the study's N may be clear by another metric.
    Headline metrics only: a paired bootstrap of precision or recall recomputes k-NN balls per resample."""
    counts = {}
    for metric in analysis.headline_metrics(plain):
        best = analysis.best_model_per_budget(plain, metric)
        counts[metric] = {"crossovers": len(analysis.crossovers(best))}
        if comparisons is not None:
            counts[metric]["beyond_noise"] = crossovers_called(best, comparisons, metric)
    return counts


def prompt_set_headline(df: pd.DataFrame, reference_steps: int | None, reference_model: str | None,
                        comparisons: Comparisons | None = None) -> dict:
    metric, out = analysis.primary_metric(df), {}
    plain = analysis.without_search(df)
    if not plain.empty:
        sampler = analysis.default_sampler(plain)
        steps = reference_steps if reference_steps in set(plain.loc[plain["sampler"] == sampler, "steps"]) \
            else analysis.default_reference_steps(df, sampler)
        table = analysis.table1(df, steps, sampler, reference_model, metric).set_index("model")
        for shown in analysis.headline_metrics(plain):  # every headline metric at the primary metric's guidance
            out[f"{shown}_at_{sampler}_{steps}_steps"] = {model: _finite(v) for model, v in table[shown].items()}
        best = analysis.best_model_per_budget(plain, metric)
        crossings: dict[str, float] = {}
        for row in analysis.crossovers(best).itertuples():
            name = f"{row.from_model} to {row.to_model}"
            name = name if name not in crossings else f"{name} ({sum(k.startswith(name) for k in crossings) + 1})"
            crossings[name] = _finite(row.budget)
        out["crossover_budgets"] = crossings
        out["crossovers"] = crossover_counts(plain, comparisons)  # over every sampler's points
        out[f"crossovers_{sampler}"] = crossover_counts(plain[plain["sampler"] == sampler], comparisons)  # its ladder alone
    if search_analysis.has_search(df):
        gains = search_analysis.verifier_gains(df)
        gains = gains[gains["metric"] == metric].dropna(subset=["relative_gain"])
        out[f"search_gain_{metric}"] = {name: _finite(v) for name, v in gains.groupby("search")["relative_gain"].mean().items()}
    return out


def plot_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The curves of one prompt set, by file stem: its primary metric (`value`, named in `metric`) against
    Mei et al.'s sampling cost per model (`cost`, without search) and the joint frontier (`frontier`)."""
    metric, tables = analysis.primary_metric(df), {}
    plain = analysis.without_search(df)
    if not plain.empty:
        points = analysis.best_guidance(plain, metric)
        points = points[points["metric"] == metric]
        tables["cost"] = points[["model", "sampler", "steps", "relative_cost", "value", "metric"]].sort_values(
            ["model", "relative_cost"], kind="mergesort")
    frontier = analysis.joint_frontier(df, metric, "gflops_per_image")
    tables["frontier"] = frontier[["gflops_per_image", "value", "metric", "model", "cell"]]
    return tables


def write_headline(df: pd.DataFrame, headline_json: Path, plots_dir: Path, reference_steps: int | None,
                   reference_model: str | None, comparisons: Comparisons | None = None) -> None:
    prompt_sets = sorted(df["prompt_set"].unique())
    numbers = {name: prompt_set_headline(df[df["prompt_set"] == name], reference_steps, reference_model, comparisons)
               for name in prompt_sets}
    write_text(headline_json, json.dumps(numbers, indent=1, sort_keys=True) + "\n")
    with atomic_directory(plots_dir) as out:
        for name in prompt_sets:
            for stem, table in plot_tables(df[df["prompt_set"] == name]).items():
                table.to_csv(out / f"{name}-{stem}.csv", index=False, float_format="%.6g")
