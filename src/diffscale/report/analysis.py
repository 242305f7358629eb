"""The numbers of model size against sampling steps (Mei et al.) and of the joint frontier.

Pure pandas functions of the tidy metrics table (one row per cell and metric, see `report.tidy`), so the
report, the tests and a notebook all read the same numbers. Functions that compare cells with each other
take one prompt set at a time: scores on different prompt sets are not comparable. The search numbers
(`report.search_analysis`) build on the helpers here: model order, best guidance, best first.
"""

from __future__ import annotations

import math

import pandas as pd

from diffscale.report.metrics import HEADLINE_METRICS, higher_is_better
from diffscale.report.paper import PAPER, mei2024_table1
from diffscale.report.text import size_label
from diffscale.sampling.samplers import SAMPLERS

# A cell is one of these configurations at one guidance scale.
CONFIG = ["model", "sampler", "steps", "search", "verifier", "search_budget", "prompt_set"]
_CONFIG_OUT = ["model", "params", "sampler", "steps", "guidance", "search", "verifier", "search_budget"]
_SCORE_OUT = ["value", "ci_low", "ci_high"]
# Relative tolerance when comparing a cost with a budget read from the same (rounded) table.
COST_TOLERANCE = 1e-8


def model_order(df: pd.DataFrame) -> list[str]:
    """Models from smallest to largest, so legends, colours and tables read as a ladder."""
    sizes = df[["model", "params"]].drop_duplicates("model").sort_values(["params", "model"], kind="mergesort")
    return sizes["model"].tolist()


def model_labels(df: pd.DataFrame) -> dict[str, str]:
    """'toy-w8 (0.1M)' for every model, for legends and sentences."""
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    return {model: f"{model} ({size_label(sizes[model])})" for model in model_order(df)}


def headline_metrics(df: pd.DataFrame) -> list[str]:
    """The plotted metrics present in the table, FID first."""
    present = set(df["metric"])
    return [metric for metric in HEADLINE_METRICS if metric in present]


def primary_metric(df: pd.DataFrame) -> str:
    """The metric that picks the guidance scale and the winners: FID as in Mei et al., else the first present."""
    headline = headline_metrics(df)
    return headline[0] if headline else sorted(df["metric"].unique())[0]


def default_sampler(df: pd.DataFrame) -> str:
    """DDIM, the paper's default sampler, when present; else the first sampler of the study."""
    samplers = df["sampler"].unique().tolist()
    return "ddim" if "ddim" in samplers else samplers[0]


def default_reference_steps(df: pd.DataFrame, sampler: str) -> int:
    """The longest no-search schedule of a sampler (the paper's 50 DDIM steps is its longest)."""
    return int(without_search(df).loc[lambda d: d["sampler"] == sampler, "steps"].max())


def without_search(df: pd.DataFrame) -> pd.DataFrame:
    """Plain sampling cells: the size-vs-steps question of Mei et al. spends no NFEs on search."""
    return df[df["search"] == "none"]


def require_one_prompt_set(df: pd.DataFrame) -> None:
    """Refuse to compare scores computed on different prompt sets."""
    prompt_sets = df["prompt_set"].unique()
    if len(prompt_sets) > 1:
        raise ValueError(
            f"scores of different prompt sets are not comparable ({', '.join(map(str, prompt_sets))}): "
            "pass one prompt set at a time, e.g. df[df.prompt_set == name]"
        )


def rank_correlation(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho with pandas alone (scipy is not a dependency); NaN when either side is constant."""
    pair = pd.DataFrame({"x": x.to_numpy(), "y": y.to_numpy()}).dropna()
    return float(pair.corr(method="spearman").loc["x", "y"]) if len(pair) > 1 else math.nan


def best_first(frame: pd.DataFrame, metric: str, tiebreak: list[str]) -> pd.DataFrame:
    """Rows from best to worst value; `tiebreak` columns (ascending) then the cell id settle ties."""
    keys = ["value", *tiebreak, "cell"]
    ascending = [not higher_is_better(metric)] + [True] * (len(keys) - 1)
    return frame.sort_values(keys, ascending=ascending, kind="mergesort")


def winner(frame: pd.DataFrame, metric: str) -> str:
    """The model with the best value in `frame` (ties: the smaller model)."""
    ranked = frame.sort_values(["value", "params"], ascending=[not higher_is_better(metric), True], kind="mergesort")
    return ranked["model"].iloc[0]


def best_guidance(df: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """Keep, per configuration, the guidance scale with the best `metric` (ties: the lower scale).

    Mei et al. sweep the guidance scale at every (model, steps) and report the best FID. All metric rows
    of the chosen cell are kept, with its scale in `best_guidance`, so that CLIPScore is read at the
    FID-best guidance, as in the paper.
    """
    scored = df[(df["metric"] == metric) & df["value"].notna()]
    chosen = best_first(scored, metric, ["guidance"]).drop_duplicates(CONFIG)
    guidance = chosen.set_index("cell")["guidance"].rename("best_guidance")
    kept = df[df["cell"].isin(guidance.index)].drop(columns="best_guidance", errors="ignore")
    return kept.join(guidance, on="cell").reset_index(drop=True)


def best_model_per_budget(
    df: pd.DataFrame, metric: str = "fid", cost: str = "relative_cost", budgets: list[float] | None = None
) -> pd.DataFrame:
    """For each budget, the model whose best configuration within that cost has the best `metric`.

    This is Mei et al.'s question (which size wins at a fixed sampling cost), answered for every cost
    present in the table unless `budgets` are given. Budgets below the cheapest configuration get no row.
    Ties go to the cheaper configuration, then the smaller model. `runner_up` is the best other model,
    so a reader can see whether the win exceeds the confidence interval.
    """
    require_one_prompt_set(df)
    selected = best_guidance(df, metric)
    points = selected[(selected["metric"] == metric) & selected[cost].notna()]
    # Costs equal up to float noise (0.1 x 20 vs 1.0 x 2) are one budget.
    budgets = sorted({float(f"{c:.9g}") for c in points[cost]} if budgets is None else budgets)
    columns = ["budget", *_CONFIG_OUT, cost, *_SCORE_OUT, "runner_up", "runner_up_value", "models_compared", "cell",
               "runner_up_cell", "previous_winner_cell"]
    rows = []
    for budget in budgets:
        per_model = _best_per_model(points, metric, cost, budget)
        if per_model.empty:
            continue
        winner = per_model.iloc[0]
        runner_up = per_model.iloc[1] if len(per_model) > 1 else None
        # The last budget's winner, at this budget: what a crossover here is compared with (paired).
        previous = per_model.set_index("model")["cell"].get(rows[-1]["model"]) if rows else None
        rows.append({
            "budget": budget, **winner[[*_CONFIG_OUT, cost, *_SCORE_OUT]].to_dict(),
            "runner_up": None if runner_up is None else runner_up["model"],
            "runner_up_value": math.nan if runner_up is None else runner_up["value"],
            "models_compared": len(per_model), "cell": winner["cell"],
            "runner_up_cell": None if runner_up is None else runner_up["cell"], "previous_winner_cell": previous,
        })
    return pd.DataFrame(rows, columns=columns).assign(metric=metric)


def _best_per_model(points: pd.DataFrame, metric: str, cost: str, budget: float) -> pd.DataFrame:
    """Each model's best configuration within `budget`, best model first (ties: cheaper, smaller, fewer steps)."""
    affordable = points[points[cost] <= budget * (1 + COST_TOLERANCE)]
    return best_first(affordable, metric, [cost, "params", "steps", "guidance"]).drop_duplicates("model")


def crossovers(best_table: pd.DataFrame) -> pd.DataFrame:
    """The budgets at which the winning model changes, read from `best_model_per_budget`."""
    previous = best_table[["model", "params"]].shift()
    changed = best_table["model"].ne(previous["model"]) & previous["model"].notna()
    return pd.DataFrame({
        "budget": best_table.loc[changed, "budget"],
        "from_model": previous.loc[changed, "model"],
        "from_params": previous.loc[changed, "params"].astype("int64"),
        "to_model": best_table.loc[changed, "model"],
        "to_params": best_table.loc[changed, "params"].astype("int64"),
        # The two cells a paired comparison of the crossover reads: the new winner and the old one, both
        # within this budget.
        "to_cell": best_table.loc[changed, "cell"],
        "from_cell": best_table.loc[changed, "previous_winner_cell"],
    }).reset_index(drop=True)


def _normalized_cost(df: pd.DataFrame, reference_model: str | None) -> pd.Series:
    """GFLOPs per NFE over the reference model's (the largest unless given): Mei et al.'s cost unit, per model."""
    reference_model = reference_model or model_order(df)[-1]
    gflops = df.drop_duplicates("model").set_index("model")["gflops_per_nfe"]
    if reference_model not in gflops:
        raise ValueError(f"reference model {reference_model!r} is not in the table")
    return (gflops / gflops[reference_model]).rename("normalized_cost")


def _at_reference_steps(df: pd.DataFrame, reference_steps: int, sampler: str | None, metric: str) -> pd.DataFrame:
    """Every metric row of the `metric`-best guidance per model, at one sampler and step count, no search."""
    require_one_prompt_set(df)
    sampler = sampler or default_sampler(df)
    plain = without_search(df)
    return best_guidance(plain[(plain["sampler"] == sampler) & (plain["steps"] == reference_steps)], metric)


def table1(
    df: pd.DataFrame,
    reference_steps: int,
    sampler: str | None = None,
    reference_model: str | None = None,
    metric: str = "fid",
) -> pd.DataFrame:
    """The paper's Table 1 for this ladder: size, GFLOPs per NFE, normalised cost and scores at one step count.

    Normalised cost is GFLOPs per NFE over the reference model's (the largest unless given), the unit
    of Mei et al.'s sampling cost. Scores are read at the `metric`-best guidance of `sampler` (default:
    DDIM if present) at `reference_steps`, without search.
    """
    selected = _at_reference_steps(df, reference_steps, sampler, metric)
    if selected.empty:
        return pd.DataFrame(columns=["model", "params", "gflops_per_nfe", "normalized_cost", "best_guidance", "cell"])
    wide = selected.pivot(index="model", columns="metric", values="value")
    metrics = headline_metrics(selected) + sorted(set(wide.columns) - set(HEADLINE_METRICS))
    sizes = selected.drop_duplicates("model").set_index("model")[["params", "gflops_per_nfe", "best_guidance", "cell"]]
    table = sizes.join(_normalized_cost(df, reference_model)).join(wide[metrics])
    table = table.loc[model_order(selected)].reset_index()
    table.columns.name = None
    return table[["model", "params", "gflops_per_nfe", "normalized_cost", "best_guidance", *metrics, "cell"]]


def guidance_map(df: pd.DataFrame, sampler: str, metric: str = "fid") -> pd.DataFrame:
    """Model x steps table of the best guidance scale of `sampler` (no search), smallest model first.

    Mei et al. find that more steps lower the best guidance and bigger models raise it.
    """
    require_one_prompt_set(df)
    plain = without_search(df)
    selected = best_guidance(plain[plain["sampler"] == sampler], metric)
    chosen = selected[selected["metric"] == metric]
    table = chosen.pivot(index="model", columns="steps", values="best_guidance")
    return table.reindex(model_order(chosen))


def joint_frontier(df: pd.DataFrame, metric: str, cost: str = "gflops_per_image") -> pd.DataFrame:
    """The Pareto frontier of quality against cost per image, across every configuration.

    Walking up in cost, a configuration (model, steps, guidance, search, verifier, budget) joins the
    frontier when it beats every cheaper one: the best buy at each budget, which neither paper draws.
    """
    require_one_prompt_set(df)
    points = df[(df["metric"] == metric) & df["value"].notna() & df[cost].notna()]
    ranked = best_first(points, metric, []).sort_values(cost, kind="mergesort")
    best_before = (ranked["value"].cummax() if higher_is_better(metric) else ranked["value"].cummin()).shift()
    improves = ranked["value"].gt(best_before) if higher_is_better(metric) else ranked["value"].lt(best_before)
    frontier = ranked[improves | best_before.isna()]
    return frontier[[cost, *_SCORE_OUT, *_CONFIG_OUT, "cell"]].assign(metric=metric).reset_index(drop=True)


def paper_trend_comparison(
    df: pd.DataFrame,
    reference_steps: int,
    sampler: str | None = None,
    metric: str = "fid",
    reference_model: str | None = None,
) -> pd.DataFrame:
    """Normalised cost and `metric` per model for the toy ladder (as in `table1`) and Mei et al.'s Table 1.

    Toy scores are read at the guidance with the best primary metric (FID), as the paper reads its CLIP
    score. Long form with a `source` column ("toy", "paper"); the paper's rows have no confidence interval.
    The ladders differ in scale by orders of magnitude, so what compares is the trend with size.
    """
    paper = mei2024_table1()
    if metric not in paper:
        raise ValueError(f"{PAPER} report FID and CLIP score only, not {metric!r}")
    columns = ["source", "model", "params", "normalized_cost", "metric", *_SCORE_OUT]
    selected = _at_reference_steps(df, reference_steps, sampler, primary_metric(df))
    toy = selected[selected["metric"] == metric].join(_normalized_cost(df, reference_model), on="model")
    toy = toy.set_index("model").loc[model_order(toy)].reset_index().assign(source="toy")
    paper = paper.rename(columns={metric: "value"}).assign(
        source="paper", model=paper["params"].map(size_label), metric=metric, ci_low=math.nan, ci_high=math.nan
    )
    return pd.concat([toy[columns], paper[columns]], ignore_index=True)


def trend_agreement(comparison: pd.DataFrame) -> pd.DataFrame:
    """Per source: Spearman rho of (size, metric), smallest, largest and best model, and the noise level.

    `agrees_with_paper`: the rank correlation has the paper's sign, i.e. quality moves the same way with
    size. `spread` (largest minus smallest model) beside `median_ci_width` says whether the toy ladder
    resolves a size effect at all.
    """
    rows = []
    for source, ladder in comparison.groupby("source", sort=False):
        ladder = ladder.dropna(subset=["value"]).sort_values("params", kind="mergesort")
        if ladder.empty:
            continue
        metric = ladder["metric"].iloc[0]
        best = best_first(ladder.assign(cell=ladder["model"]), metric, ["params"]).iloc[0]
        rows.append({
            "source": source, "metric": metric, "models": len(ladder),
            "spearman_size": rank_correlation(ladder["params"], ladder["value"]),
            "smallest": ladder["model"].iloc[0], "smallest_value": ladder["value"].iloc[0],
            "largest": ladder["model"].iloc[-1], "largest_value": ladder["value"].iloc[-1],
            "best": best["model"], "best_value": best["value"],
            "spread": ladder["value"].iloc[-1] - ladder["value"].iloc[0],
            "median_ci_width": (ladder["ci_high"] - ladder["ci_low"]).median(),
        })
    table = pd.DataFrame(rows)
    if "paper" not in set(table.get("source", [])):
        return table
    paper_sign = math.copysign(1, table.set_index("source").loc["paper", "spearman_size"])
    return table.assign(agrees_with_paper=table["spearman_size"] * paper_sign > 0)


# -- training compute (Mei et al. compare sizes also by the compute their training spent) ----------------

TRAINING_METRICS = ("fid", "compositional_accuracy")


def with_training_flops(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of models whose training FLOPs are known (counted by their ledger or stated in their entry)."""
    return df[df["training_flops"].notna()] if "training_flops" in df else df.iloc[0:0]


def training_metrics(df: pd.DataFrame) -> list[str]:
    """FID and compositional accuracy where present, else the primary metric."""
    present = [metric for metric in TRAINING_METRICS if metric in set(df["metric"])]
    return present or [primary_metric(df)]


def default_sampling_budgets(df: pd.DataFrame, cost: str = "relative_cost", count: int = 4) -> list[float]:
    """A few fixed sampling budgets: up to `count` of the largest model's own costs, spread from its cheapest
    configuration to its most expensive, so that every budget affords the largest model something."""
    plain = without_search(df)
    reference = plain[plain["gflops_per_nfe"] == plain["gflops_per_nfe"].max()]
    costs = sorted({float(f"{c:.9g}") for c in reference[cost].dropna()})
    if len(costs) <= count:
        return costs
    return [costs[round(i * (len(costs) - 1) / (count - 1))] for i in range(count)]


def quality_vs_training(df: pd.DataFrame, metric: str, budgets: list[float] | None = None,
                        cost: str = "relative_cost") -> pd.DataFrame:
    """Mei et al.'s view of training compute: per fixed sampling budget, each model's best `metric` within it
    (no search, best guidance), against the model's training FLOPs. A model with no configuration within a
    budget has no row there."""
    require_one_prompt_set(df)
    known = with_training_flops(without_search(df))
    selected = best_guidance(known, metric)
    points = selected[(selected["metric"] == metric) & selected[cost].notna()]
    budgets = default_sampling_budgets(known, cost) if budgets is None else budgets
    columns = ["budget", *_CONFIG_OUT, "training_flops", cost, *_SCORE_OUT]
    rows = [_best_per_model(points, metric, cost, budget).assign(budget=budget) for budget in budgets]
    rows = [frame for frame in rows if not frame.empty]
    if not rows:
        return pd.DataFrame(columns=[*columns, "metric"])
    table = pd.concat(rows).sort_values(["budget", "params"], kind="mergesort")
    return table[columns].assign(metric=metric).reset_index(drop=True)


def default_image_counts(df: pd.DataFrame) -> list[int]:
    """Three numbers of generated images for the joint view: a hundredth of, about, and a hundred times the
    count at which sampling costs as much as training (powers of ten), from the table's median model."""
    known = with_training_flops(without_search(df))
    per_model = known.groupby("model").agg(training=("training_flops", "first"), image=("gflops_per_image", "median"))
    break_even = (per_model["training"] / (per_model["image"] * 1e9)).median()
    exponent = max(round(math.log10(break_even)), 2)
    return [10 ** (exponent - 2), 10 ** exponent, 10 ** (exponent + 2)]


def training_plus_sampling_frontiers(df: pd.DataFrame, metric: str, images: list[int] | None = None) -> pd.DataFrame:
    """The joint view: per number of images N, the frontier of `metric` against training FLOPs + N x the FLOPs
    of one image (denoiser GFLOPs per image, CFG included; no search). Along a frontier, the model of the last
    point within a total budget is the best model for that budget and N."""
    require_one_prompt_set(df)
    known = with_training_flops(without_search(df))
    images = default_image_counts(known) if images is None else images
    frontiers = []
    for count in images:
        total = known.assign(total_flops=known["training_flops"] + count * known["gflops_per_image"] * 1e9)
        frontiers.append(joint_frontier(total, metric, "total_flops").assign(images=count))
    columns = ["images", "total_flops", *_SCORE_OUT, *_CONFIG_OUT, "cell", "metric"]
    return pd.concat(frontiers, ignore_index=True)[columns] if frontiers else pd.DataFrame(columns=columns)


def best_model_by_total(frontiers: pd.DataFrame) -> pd.DataFrame:
    """Per number of images, the totals from which each model is the best (where the frontier's model changes)."""
    rows = []
    for count, frontier in frontiers.groupby("images", sort=True):
        starts = frontier[frontier["model"].ne(frontier["model"].shift())]
        rows.append(starts[["images", "total_flops", "model", "params", "steps", "value"]])
    columns = ["images", "total_flops", "model", "params", "steps", "value"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def model_kind(df: pd.DataFrame) -> pd.Series:
    """Each row's model kind, "diffusion" or "flow": the kind its sampler serves (validation and the samplers
    refuse any other pairing, so the sampler says what the model is)."""
    return df["sampler"].map(lambda name: SAMPLERS[name].serves if name in SAMPLERS else "diffusion")


def best_per_kind(df: pd.DataFrame, metric: str = "fid", cost: str = "relative_cost") -> pd.DataFrame:
    """Mei et al.'s question asked of flow and diffusion models at equal cost: at every budget of the table, the
    best no-search configuration of each kind within it (guidance chosen per point), side by side, with the
    winning kind ("tie" when equal). Empty unless the table has both kinds."""
    require_one_prompt_set(df)
    plain = without_search(df)
    kinds = model_kind(plain)
    if set(kinds) != {"diffusion", "flow"}:
        return pd.DataFrame()
    points = plain[(plain["metric"] == metric) & plain[cost].notna()]
    budgets = sorted({float(f"{c:.9g}") for c in points[cost]})
    keep = ["budget", "model", "params", "sampler", "steps", "guidance", cost, "value", "ci_low", "ci_high", "cell"]
    best = {kind: best_model_per_budget(plain[kinds == kind], metric, cost, budgets)[keep] for kind in ("diffusion", "flow")}
    table = best["diffusion"].merge(best["flow"], on="budget", suffixes=("_diffusion", "_flow"))
    flow_better = (table["value_flow"] > table["value_diffusion"]) == higher_is_better(metric)
    table["winner_kind"] = ["tie" if a == b else "flow" if f else "diffusion"
                            for a, b, f in zip(table["value_diffusion"], table["value_flow"], flow_better)]
    return table.assign(metric=metric)


def crossovers_per_kind(df: pd.DataFrame, metric: str = "fid") -> dict[str, pd.DataFrame]:
    """The size-vs-steps crossovers within each model kind's ladder (`crossovers` of its own best-per-budget)."""
    plain = without_search(df)
    kinds = model_kind(plain)
    return {kind: crossovers(best_model_per_budget(plain[kinds == kind], metric)) for kind in sorted(set(kinds))}
