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
    """'toy-w8 (0.1M)' for every model, 'lcm-w8 (0.1M, distilled)' for a distilled one, for legends and sentences."""
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    distilled = teachers(df)
    return {model: f"{model} ({size_label(sizes[model])}{', distilled' * (model in distilled)})"
            for model in model_order(df)}


def headline_metrics(df: pd.DataFrame) -> list[str]:
    """The plotted metrics present in the table, FID first."""
    present = set(df["metric"])
    return [metric for metric in HEADLINE_METRICS if metric in present]


def primary_metric(df: pd.DataFrame) -> str:
    """The metric that picks the guidance scale and the winners: the first headline metric present (the toy judge's
    caption probability, else FID as in Mei et al.), else the first metric."""
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
    so a reader can see whether the win exceeds the confidence interval; `distilled_from` is the winner's
    teacher, empty for an undistilled model.
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
    table = pd.DataFrame(rows, columns=columns)
    # The winner's teacher ("" for an undistilled winner), so the table says which row is a distilled model.
    distilled = teachers(df)
    return table.assign(distilled_from=table["model"].map(lambda model: distilled.get(model, "")), metric=metric)


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
    columns = ["budget", *_CONFIG_OUT, "training_flops", cost, *_SCORE_OUT, "cell"]
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
    for _, frontier in frontiers.groupby("images", sort=True):
        starts = frontier[frontier["model"].ne(frontier["model"].shift())]
        rows.append(starts[["images", "total_flops", "model", "params", "steps", "value"]])
    columns = ["images", "total_flops", "model", "params", "steps", "value"]
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=columns)


def model_kind(df: pd.DataFrame) -> pd.Series:
    """Each row's model kind, "diffusion" or "flow": the kind its sampler serves (validation and the samplers
    refuse any other pairing, so the sampler says what the model is)."""
    return df["sampler"].map(lambda name: SAMPLERS[name].serves if name in SAMPLERS else "diffusion")


def teachers(df: pd.DataFrame) -> dict[str, str]:
    """Each distilled model of the table and the model its entry says it was distilled from (`distilled_from`;
    tables written before the column existed have no distilled model)."""
    if "distilled_from" not in df:
        return {}
    declared = df[["model", "distilled_from"]].drop_duplicates("model").dropna()
    return {model: str(teacher) for model, teacher in zip(declared["model"], declared["distilled_from"]) if teacher}


def model_distillation(df: pd.DataFrame) -> pd.Series:
    """Each row's ladder, "distilled" (its model declares `distilled_from`) or "undistilled"."""
    return df["model"].isin(teachers(df).keys()).map({True: "distilled", False: "undistilled"})


# The two-sided comparisons of the report: how rows split into two ladders of models, and the ladders' names
# (the first is the reference side of a table's columns).
SPLITS = {
    "kind": (model_kind, ("diffusion", "flow")),
    "distillation": (model_distillation, ("undistilled", "distilled")),
}


def has_split(df: pd.DataFrame, split: str) -> bool:
    """Whether the plain cells hold both ladders of `split`."""
    plain = without_search(df)
    group, names = SPLITS[split]
    return set(group(plain)) == set(names)


def best_per_group(df: pd.DataFrame, split: str, metric: str = "fid", cost: str = "relative_cost") -> pd.DataFrame:
    """Mei et al.'s question asked of two ladders at equal cost (flow vs diffusion models, distilled vs undistilled
    ones; `SPLITS`): at every budget of the table, the best no-search configuration of each ladder within it
    (guidance chosen per point), side by side with the suffixes `_<ladder>`, and the winning ladder in `winner`
    ("tie" when equal). A budget where one ladder affords nothing has no row. Empty unless both ladders exist."""
    require_one_prompt_set(df)
    if not has_split(df, split):
        return pd.DataFrame()
    plain = without_search(df)
    group, (first, second) = SPLITS[split]
    groups = group(plain)
    points = plain[(plain["metric"] == metric) & plain[cost].notna()]
    budgets = sorted({float(f"{c:.9g}") for c in points[cost]})
    keep = ["budget", "model", "params", "sampler", "steps", "guidance", cost, "value", "ci_low", "ci_high", "cell"]
    best = {name: best_model_per_budget(plain[groups == name], metric, cost, budgets)[keep] for name in (first, second)}
    table = best[first].merge(best[second], on="budget", suffixes=(f"_{first}", f"_{second}"))
    second_better = (table[f"value_{second}"] > table[f"value_{first}"]) == higher_is_better(metric)
    table["winner"] = ["tie" if a == b else second if s else first
                       for a, b, s in zip(table[f"value_{first}"], table[f"value_{second}"], second_better)]
    return table.assign(metric=metric)


def crossovers_per_group(df: pd.DataFrame, split: str, metric: str = "fid") -> dict[str, pd.DataFrame]:
    """The size-vs-steps crossovers within each ladder of `split` (`crossovers` of its own best-per-budget)."""
    plain = without_search(df)
    groups = SPLITS[split][0](plain)
    return {name: crossovers(best_model_per_budget(plain[groups == name], metric)) for name in sorted(set(groups))}


def overtaken_at(table: pd.DataFrame, ladder: str) -> float | None:
    """From `best_per_group`: the smallest budget from which `ladder` wins at every budget of the table (ties
    excepted) after the other ladder won below it; None when the other ladder never wins below, or `ladder`
    does not keep winning to the largest budget. For distillation this is where the frontiers cross: the budget
    above which the undistilled best beats the distilled best."""
    decided = table[table["winner"] != "tie"]
    if decided.empty or decided["winner"].iloc[-1] != ladder:
        return None
    others = decided.index[decided["winner"] != ladder]
    if len(others) == 0:
        return None
    return float(decided.loc[decided.index > others[-1], "budget"].iloc[0])


def ordering_per_budget(df: pd.DataFrame, metric: str = "fid", cost: str = "relative_cost") -> pd.DataFrame:
    """Does the size ordering at a fixed sampling cost survive distillation? Per budget, the distilled models
    whose teachers are in the table and the teachers themselves, each at its best configuration within the
    budget (no search, best guidance), ranked best first within their own ladder; `same_order` when the students
    rank as their teachers do (a student named by its teacher in `distilled_order`). Budgets where fewer than two
    such pairs both fit have no row."""
    require_one_prompt_set(df)
    plain = without_search(df)
    pairs = {student: teacher for student, teacher in teachers(plain).items() if teacher in set(plain["model"])}
    selected = best_guidance(plain[plain["model"].isin([*pairs, *pairs.values()])], metric)
    points = selected[(selected["metric"] == metric) & selected[cost].notna()]
    budgets = sorted({float(f"{c:.9g}") for c in points[cost]})
    columns = ["budget", "pairs", "undistilled_order", "distilled_order", "same_order", "spearman", "best_undistilled",
               "best_distilled"]
    rows = []
    for budget in budgets:
        per_model = _best_per_model(points, metric, cost, budget).set_index("model")
        fitting = [(s, t) for s, t in pairs.items() if s in per_model.index and t in per_model.index]
        if len(fitting) < 2:
            continue
        students, fitting_teachers = [s for s, _ in fitting], [t for _, t in fitting]
        # best_first order of `_best_per_model`, restricted to each ladder's fitting models
        undistilled = [m for m in per_model.index if m in fitting_teachers]
        distilled = [pairs[m] for m in per_model.index if m in students]
        rank = {teacher: i for i, teacher in enumerate(undistilled)}
        rows.append({
            "budget": budget, "pairs": len(fitting), "undistilled_order": " > ".join(undistilled),
            "distilled_order": " > ".join(distilled), "same_order": undistilled == distilled,
            "spearman": rank_correlation(pd.Series([rank[t] for t in distilled]), pd.Series(range(len(distilled)))),
            "best_undistilled": undistilled[0], "best_distilled": next(m for m in per_model.index if m in students),
        })
    return pd.DataFrame(rows, columns=columns).assign(metric=metric)
