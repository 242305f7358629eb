"""What the study shows about model size, steps, guidance and cost, in sentences generated from the numbers.

Each function turns numbers of `report.analysis` into readings (Mei et al., "Bigger is not Always Better:
Scaling Properties of Latent Diffusion Models", arXiv:2404.01367, and the joint frontier); none draws or
writes anything. The search readings are `report.search_readings`.
"""

from __future__ import annotations

import pandas as pd

from diffscale.report.analysis import (
    SPLITS,
    best_guidance,
    model_labels,
    model_order,
    overtaken_at,
    primary_metric,
    rank_correlation,
    teachers,
    trend_agreement,
    winner,
    without_search,
)
from diffscale.report.metrics import HEADLINE_METRICS, higher_is_better, metric_name
from diffscale.report.paper import PAPER
from diffscale.report.text import capitalized, change, config_label, cost_unit, flops, num, runs, trend

# Mei et al.'s headline budget: at sampling cost 3 their 83M model beats the 866M one.
PAPER_HEADLINE_COST = 3.0


def intro(df: pd.DataFrame) -> list[str]:
    """What the study is, generated from the table itself."""
    labels = model_labels(df)
    order = model_order(df)
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    samplers = "; ".join(
        f"{sampler} at {', '.join(str(s) for s in sorted(frame['steps'].unique()))} steps"
        for sampler, frame in df.groupby("sampler", sort=False)
    )
    guidance = ", ".join(f"{g:g}" for g in sorted(df["guidance"].unique()))
    searches = sorted({f"{s} by {v}" for s, v in zip(df["search"], df["verifier"]) if s != "none"})
    distilled = teachers(df)
    students = (f" {len(distilled)} of them distilled ({', '.join(f'{s} from {t}' for s, t in distilled.items())});"
                if distilled else "")
    return [
        f"Study {', '.join(df['study'].unique())}: {df['cell'].nunique()} cells. {len(order)} denoisers from "
        f"{labels[order[0]]} to {labels[order[-1]]} ({num(sizes[order[-1]] / sizes[order[0]])}x in parameters);"
        f"{students} "
        f"samplers {samplers}; guidance scales {guidance}; search {', '.join(searches) or 'none'}; prompt sets "
        f"{', '.join(df['prompt_set'].unique())}; metrics {', '.join(metric_name(m) for m in df['metric'].unique())}.",
        "It asks which model size gives the best images at a fixed sampling cost (Mei et al., \"Bigger is not Always "
        "Better: Scaling Properties of Latent Diffusion Models\", arXiv:2404.01367), what searching over initial "
        "noises with a verifier buys (Ma et al., \"Inference-Time Scaling for Diffusion Models beyond Scaling "
        "Denoising Steps\", arXiv:2501.09732), and which combination of size, steps and search is best for a given "
        "compute budget per image.",
        "Costs: sampling cost is the denoiser's GFLOPs per evaluation over the reference model's, times the number "
        "of evaluations (Mei et al.'s unit; classifier-free guidance not counted). GFLOPs and NFEs per image count a "
        "guided pair as two evaluations and include search; total GFLOPs also add the verifiers' GFLOPs, the fair "
        "cost of search. Where several guidance scales were run, each point uses the one with the best "
        f"{metric_name(primary_metric(df))}, as Mei et al. do.",
    ]


def steps_readings(df: pd.DataFrame, comparisons=None) -> list[str]:
    """Per sampler run at two step counts or more: how the primary metric changes from the fewest steps to the
    most for the smallest and the largest model, and which model is best at each end, against the runner-up
    paired over prompts (`comparisons`; without per-image data the lead is not called)."""
    metric = primary_metric(df)
    points = best_guidance(without_search(df), metric)
    points = points[points["metric"] == metric]
    labels = model_labels(df)
    sentences = []
    for sampler, frame in points.groupby("sampler", sort=False):
        if frame["steps"].nunique() < 2:
            continue
        few, many = frame["steps"].min(), frame["steps"].max()
        changes = []
        for model in dict.fromkeys((model_order(frame)[0], model_order(frame)[-1])):
            line = frame[frame["model"] == model].set_index("steps")["value"]
            if {few, many} <= set(line.index):
                changes.append(f"{change(line[few], line[many])} for {labels[model]}")
        best = "; ".join(f"at {s} step{'s' if s != 1 else ''} the best model is "
                         f"{_lead(frame[frame['steps'] == s], metric, labels, comparisons)}" for s in (few, many))
        # No clause on the change when neither end model was run at both step counts (only some models searched).
        trend = f"{metric_name(metric)} {' and '.join(changes)}; " if changes else ""
        sentences.append(f"With {sampler}, as steps go from {few} to {many}, {trend}{best}.")
    return sentences


def _lead(frame: pd.DataFrame, metric: str, labels: dict, comparisons) -> str:
    """'X, ahead of Y beyond noise' / 'X, tied with Y' / 'X (not called against Y: no per-image data)': the
    best model of `frame` against the best other one, paired."""
    top = winner(frame, metric)
    others = frame[frame["model"] != top]
    if others.empty:
        return f"{labels[top]}, the only model run there"
    rival = winner(others, metric)
    cell = frame.set_index("model")["cell"]
    outcome = _paired_outcome(comparisons, metric, cell[top], cell[rival])
    return {"ahead": f"{labels[top]}, ahead of {labels[rival]} beyond noise",
            "tie": f"{labels[top]}, tied with {labels[rival]} (paired CI)",
            "behind": f"{labels[top]} by its mean, behind {labels[rival]} by the paired CI"}.get(
        outcome, f"{labels[top]} (not called against {labels[rival]}: no per-image data)")


def cost_readings(df: pd.DataFrame, best: pd.DataFrame, changes: pd.DataFrame, metric: str) -> list[str]:
    """The best configuration within the smallest and the largest budget, where the winning model changes
    (and whether that is beyond noise), and the winner at Mei et al.'s headline cost.

    `best` and `changes` are `best_model_per_budget` (two budgets or more) and its `crossovers`.
    """
    name = metric_name(metric)
    labels = model_labels(df)
    first, last = best.iloc[0], best.iloc[-1]
    sentences = [
        f"Sampling cost (normalized model cost x steps; one step of the reference model costs 1; CFG not counted) "
        f"runs from {num(first['budget'])} to {num(last['budget'])}. Within the smallest budget the best {name} is "
        f"{num(first['value'])}, from {config_label(first)}; within the largest it is {num(last['value'])}, from "
        f"{config_label(last)}."
    ]
    if changes.empty:
        sentences.append(f"The same model, {labels[first['model']]}, has the best {name} at every budget (the paired "
                         f"comparison with the runner-up below says where that is beyond noise).")
    else:
        steps = [f"from {labels[c.from_model]} to {labels[c.to_model]} at sampling cost {num(c.budget)}"
                 for c in changes.itertuples()]
        if "beyond_noise" in changes and changes["beyond_noise"].notna().all():
            beyond = changes[changes["beyond_noise"].astype(bool)]
            noise = (f"paired over prompts (the same bootstrap prompts for both cells), the new winner's {name} "
                     f"differs from the old winner's beyond noise (the CI of the difference excludes zero) at "
                     f"{len(beyond)} of these {len(changes)} budgets"
                     + (f" ({', '.join(num(b) for b in beyond['budget'])})" if len(beyond) else "")
                     + ("" if len(beyond) == len(changes) else "; elsewhere the two models tie"))
        else:
            at_change = best[best["budget"].isin(changes["budget"])]
            within_noise = int(at_change["runner_up_value"].between(at_change["ci_low"], at_change["ci_high"]).sum())
            noise = ("each new winner is ahead by more than its confidence interval" if within_noise == 0 else
                     f"at {within_noise} of these {len(changes)} budgets the runner-up's {name} lies inside the "
                     f"winner's confidence interval, so the change there is within noise")
        sentences.append(f"The best model changes {'; '.join(steps)}. {capitalized(noise)}.")
    if "beyond_noise" in best and best["beyond_noise"].notna().any():
        contested = best["runner_up_cell"].notna()
        won = int((contested & best["beyond_noise"].map(lambda v: v is True)).sum())
        sentences.append(f"Winner against runner-up, paired: the winner is called at {won} of {int(contested.sum())} "
                         f"budgets with a runner-up; at the others the paired CI of the difference includes zero, "
                         f"a tie.")
    if first["budget"] <= PAPER_HEADLINE_COST:
        at_headline = best[best["budget"] <= PAPER_HEADLINE_COST].iloc[-1]
        verdict = ("the largest model, unlike the paper" if at_headline["model"] == model_order(df)[-1]
                   else "a smaller model than the largest, as in the paper")
        if at_headline["runner_up"] is None or pd.isna(at_headline["runner_up"]):
            verdict = "the only model affordable there, which can neither agree nor disagree with the paper"
        elif not (pd.notna(at_headline.get("beyond_noise")) and bool(at_headline["beyond_noise"])):
            verdict = (f"ahead of {labels[at_headline['runner_up']]} without a paired difference beyond noise, a tie "
                       f"that neither agrees nor disagrees with the paper")
        sentences.append(
            f"At sampling cost {PAPER_HEADLINE_COST:g}, where {PAPER} find their 83M model best, the best model here "
            f"is {labels[at_headline['model']]} with {int(at_headline['steps'])} steps: {verdict}."
        )
    return sentences


def table1_reading(table: pd.DataFrame, labels: dict[str, str], sampler: str, steps: int, metric: str,
                   comparisons=None) -> str:
    """How each headline metric of the Table 1 analogue changes from the smallest model to the largest, and the best
    model by the primary metric against the runner-up, paired (`comparisons`)."""
    smallest, largest = labels[table["model"].iloc[0]], labels[table["model"].iloc[-1]]
    sentences = []
    for name in [m for m in HEADLINE_METRICS if m in table]:
        rho = rank_correlation(table["params"], table[name])
        sentences.append(f"{metric_name(name)} {change(table[name].iloc[0], table[name].iloc[-1])} between "
                         f"{smallest} and {largest} (Spearman rho with size {num(rho)})")
    best = _lead(table.rename(columns={metric: "value"}), metric, labels, comparisons)
    return (f"At {steps} {sampler} steps, with the guidance that gives the best {metric_name(metric)}: "
            f"{'; '.join(sentences)}. The best {metric_name(metric)} comes from {best}.")


def guidance_reading(df: pd.DataFrame, table: pd.DataFrame, sampler: str) -> str | None:
    """How the best guidance of `guidance_map` moves with steps and model size; None when it never moves."""
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    cells = table.stack().rename("guidance").reset_index()
    if cells["guidance"].nunique() < 2:
        return None
    tried = sorted(without_search(df).loc[lambda d: d["sampler"] == sampler, "guidance"].unique())
    at_edge = int(cells["guidance"].isin([tried[0], tried[-1]]).sum())
    edge = (f"the lowest or highest scale tried ({num(tried[0])} or {num(tried[-1])}) is best at {at_edge} of "
            f"{len(cells)} points")
    if 2 * at_edge > len(cells):
        return (f"With {sampler}, {edge}: the optimum sits at the grid's edge or beyond it, so how it moves with "
                f"steps and model size is not read here (a sweep that brackets it would show that).")
    by_steps = rank_correlation(cells["steps"], cells["guidance"])
    by_size = rank_correlation(cells["model"].map(sizes), cells["guidance"])
    return (
        f"With {sampler}, the best guidance ranges from {num(cells['guidance'].min())} to "
        f"{num(cells['guidance'].max())}; {edge}. It {trend(by_steps)} with more steps (Spearman rho {num(by_steps)}; "
        f"in the paper it falls) and {trend(by_size)} with model size (rho {num(by_size)}; in the paper it rises)."
    )


def paper_reading(df: pd.DataFrame, comparison: pd.DataFrame, metric: str, sampler: str, steps: int) -> str | None:
    """Whether the toy ladder's trend with size agrees with Mei et al.'s, from `paper_trend_comparison`; None
    when fewer than two toy models have the metric."""
    trends = trend_agreement(comparison).set_index("source")
    if "toy" not in trends.index or trends.loc["toy", "models"] < 2:
        return None
    toy, paper = trends.loc["toy"], trends.loc["paper"]
    name = metric_name(metric)
    resolved = abs(toy["spread"]) > toy["median_ci_width"]
    noise = (f"the change from the smallest to the largest model ({num(toy['spread'])}) "
             f"{'exceeds' if resolved else 'is within'} the typical confidence-interval width "
             f"({num(toy['median_ci_width'])})")
    if toy["agrees_with_paper"]:
        better = "higher" if higher_is_better(metric) else "lower"
        reason = f"bigger models reach {better} {name} in both, and {noise}"
    elif not resolved:
        reason = f"{noise}, so the toy ladder does not resolve a size effect at this sample size"
    else:
        reason = f"its best {name} comes from {model_labels(df)[toy['best']]}, not from its largest model"
    return (
        f"{name} at {steps} {sampler} steps: Spearman rho(size, {name}) is {num(toy['spearman_size'])} for the "
        f"toy ladder and {num(paper['spearman_size'])} in {PAPER} (50 DDIM steps). The toy trend "
        f"{'agrees' if toy['agrees_with_paper'] else 'disagrees'} with the paper: {reason}."
    )


def frontier_reading(df: pd.DataFrame, frontier: pd.DataFrame, metric: str, cost: str) -> str:
    """The frontier from `joint_frontier`: its span, the models along it, its best point and where search joins."""
    unit, name = cost_unit(cost), metric_name(metric)
    best = frontier.iloc[-1]
    if len(frontier) == 1:
        summary = (f"one configuration is both the cheapest and the best ({name} {num(best['value'])}): "
                   f"{config_label(best)}.")
    else:
        path = runs(frontier["model"].map(model_labels(df)))
        models = f"the model goes {' -> '.join(path)}" if len(path) > 1 else f"every point uses {path[0]}"
        summary = (f"the frontier has {len(frontier)} configurations from {num(frontier[cost].iloc[0])} to "
                   f"{num(best[cost])} {unit}; along it {models}. The best {name}, {num(best['value'])}, comes from "
                   f"{config_label(best)}.")
    searches = frontier[frontier["search"] != "none"]
    if (df["search"] == "none").all():
        search_note = "This prompt set has no search cells."  # others of the study may have some
    elif searches.empty:
        search_note = "No search configuration is on it."  # not "more steps buy more": the frontier may be flat
    else:
        verb = "uses" if len(searches) == 1 else "use"
        search_note = (f"{len(searches)} of its {len(frontier)} points {verb} search, the first at "
                       f"{num(searches[cost].iloc[0])} {unit}: {config_label(searches.iloc[0])}.")
    return f"{capitalized(name)} against {unit}: {summary} {search_note}"


def training_readings(df: pd.DataFrame, tables: dict[str, pd.DataFrame], comparisons=None) -> list[str]:
    """Per metric, from `quality_vs_training` tables: the best model within each fixed sampling budget with its
    training FLOPs, and, paired over prompts (`comparisons`), within which budgets the model trained with the most
    compute is ahead of the best other model beyond noise, tied with it, or behind it. Without per-image data
    the order is not called."""
    labels = model_labels(df)
    sentences = []
    for metric, table in tables.items():
        if table.empty:
            continue
        most_trained = table.loc[table["training_flops"].idxmax(), "model"]
        parts, outcomes, budgets, ties = [], {}, 0, 0
        for budget, frame in table.groupby("budget", sort=True):
            best = frame.loc[frame["model"] == winner(frame, metric)].iloc[0]
            parts.append(f"within {num(budget)}, {labels[best['model']]} ({num(best['value'])}; trained with "
                         f"{flops(best['training_flops'])} FLOPs)")
            budgets += 1
            ties += frame["value"].nunique() == 1 and len(frame) > 1
            mine, others = frame[frame["model"] == most_trained], frame[frame["model"] != most_trained]
            if not mine.empty and not others.empty:
                rival = others.loc[others["model"] == winner(others, metric)].iloc[0]
                outcomes[budget] = _paired_outcome(comparisons, metric, mine.iloc[0]["cell"], rival["cell"])
        if ties == budgets:
            verdict = "every model scores the same within every budget: training compute makes no difference here"
        elif not outcomes:
            verdict = (f"the model trained with the most compute, {labels[most_trained]}, fits no budget beside "
                       f"another model, so nothing is compared")
        elif None in outcomes.values():
            verdict = "without per-image scores the order of the models within a budget is not tested here"
        else:
            said = [f"{what} within {', '.join(num(b) for b, o in outcomes.items() if o == outcome)}"
                    for outcome, what in (("ahead", "ahead beyond noise"), ("tie", "tied"), ("behind", "behind beyond noise"))
                    if outcome in outcomes.values()]
            verdict = (f"against the best other model within each budget, paired over prompts, the model trained "
                       f"with the most compute, {labels[most_trained]}, is {'; '.join(said)}")
        sentences.append(f"{capitalized(metric_name(metric))} against training compute at fixed sampling budgets "
                         f"(sampling cost as above): the best model {'; '.join(parts)}. So {verdict}.")
    return sentences


def _paired_outcome(comparisons, metric: str, cell: str, rival: str) -> str | None:
    """'ahead', 'tie' or 'behind' for `cell` against `rival` by the paired CI; None without per-image data."""
    difference = comparisons.difference(metric, cell, rival) if comparisons is not None else None
    if difference is None:
        return None
    if not difference["beyond_noise"]:
        return "tie"
    return "ahead" if (difference["difference"] > 0) == higher_is_better(metric) else "behind"


def training_plus_sampling_readings(df: pd.DataFrame, best: pd.DataFrame, metric: str) -> list[str]:
    """Per number of images N, from `best_model_by_total`: which model is best from which total of training and
    N-image sampling FLOPs."""
    labels = model_labels(df)
    sentences = []
    for count, frame in best.groupby("images", sort=True):
        steps = [f"{labels[row.model]} from {flops(row.total_flops)}" for row in frame.itertuples()]
        sentences.append(f"Training plus {int(count):,} image{'s' * (count != 1)}, by {metric_name(metric)}: the best model is "
                         f"{', then '.join(steps)} FLOPs in total.")
    return sentences


def ranking_reading(checks: pd.DataFrame, disagreements: list[str], kid_at_floor: bool = False) -> str:
    """Whether KID and FID-infinity rank the models as FID does, from `comparisons.ranking_checks`; KID is left
    out when every model's KID is inside its real-data floor (`kid_at_floor`), where its ranks are noise."""
    space = checks["feature_space"].iloc[0]
    checked = "FID-infinity ranks" if kid_at_floor else "KID and FID-infinity rank"
    verdict = (f"{checked} the models as FID does" if not disagreements else
               "the rankings disagree, " + "; ".join(disagreements) + " (rank by FID -> rank by the other)")
    if kid_at_floor:
        verdict += (f". KID ranks nothing here: every model's KID is inside the CI of held-out real images' KID "
                    f"(up to {num(checks['kid_floor_ci_high'].max())}), as real images would score")
    return (f"Ranking checks on the Table 1 cells (features: {space}): {verdict}. FID is biased upward by a "
            f"term that shrinks as N grows and differs between models; KID is unbiased and FID-infinity removes "
            f"the 1/N term, so a disagreement marks a ranking that the sample size, not the models, may decide. "
            f"FID-infinity fits subsets as small as N/4: where those hold fewer images than the features have "
            f"dimensions, it is a rough correction.")


def group_readings(df: pd.DataFrame, split: str, table: pd.DataFrame, ladders: dict[str, pd.DataFrame],
                   metric: str) -> list[str]:
    """Two ladders of `analysis.SPLITS` (flow vs diffusion, distilled vs undistilled) from `best_per_group`: which
    ladder wins at which budgets (paired where measured), and each ladder's own size-vs-steps crossovers from
    `crossovers_per_group`."""
    labels, name = model_labels(df), metric_name(metric)
    first, second = SPLITS[split][1]
    sentences = []
    for ladder, changes in ladders.items():
        if changes.empty:
            sentences.append(f"Among the {ladder} models the best model within a budget never changes.")
        else:
            steps = ", ".join(f"{labels[row.to_model]} from {num(row.budget)}" for row in changes.itertuples())
            sentences.append(f"Among the {ladder} models alone, the best within a budget changes {len(changes)} "
                             f"time{'s' * (len(changes) != 1)}: {steps}.")
    if table.empty:
        return sentences
    parts = []
    for ladder in (second, first, "tie"):
        budgets = table.loc[table["winner"] == ladder, "budget"]
        if not budgets.empty:
            parts.append(f"{'ties' if ladder == 'tie' else ladder + ' wins'} at {len(budgets)} "
                         f"({', '.join(num(b) for b in budgets)})")
    paired = ""
    if "beyond_noise" in table and table["beyond_noise"].notna().any():
        beyond = int(table["beyond_noise"].map(lambda v: v is True).sum())
        paired = (f" The paired CI of the difference (same prompts and seeds) excludes zero at {beyond} of "
                  f"{int(table['beyond_noise'].notna().sum())} budgets.")
    return sentences + [f"{capitalized(second)} vs {first} at equal cost ({name}, each ladder's best configuration "
                        f"within the budget), of {len(table)} budgets: {'; '.join(parts)}.{paired}"]


def _paired_note(row: pd.Series, difference: str) -> str:
    """' Paired over prompts, ...' for a row of `with_differences` that has a paired difference, else ''."""
    if row.get("beyond_noise") is None or pd.isna(row.get("difference")):
        return ""
    verdict = "beyond noise" if row["beyond_noise"] else "within noise: there the two ladders tie"
    return (f" Paired over prompts, the difference there ({difference}) is {num(row['difference'])} "
            f"[{num(row['diff_ci_low'])}, {num(row['diff_ci_high'])}], {verdict}.")


def distillation_readings(df: pd.DataFrame, table: pd.DataFrame, ordering: pd.DataFrame, metric: str) -> list[str]:
    """Mei et al.'s question after distillation: whether the distilled ladder ranks its sizes as the undistilled
    one does at each budget (`ordering_per_budget`), and where the frontiers cross (`best_per_group`, distillation):
    the budget above which the undistilled best beats the distilled best."""
    labels, name = model_labels(df), metric_name(metric)
    sentences = []
    if ordering.empty:
        sentences.append("Fewer than two distilled models have their teacher in the table within a common budget, so "
                         "the size ordering before and after distillation cannot be compared.")
    else:
        kept, flipped = ordering[ordering["same_order"]], ordering[~ordering["same_order"]]
        sentences.append(
            f"Size ordering at a fixed sampling cost ({name}; each student named by its teacher): the distilled "
            f"ladder ranks its models as the undistilled one does within {len(kept)} of {len(ordering)} budgets"
            + (f" ({', '.join(num(b) for b in kept['budget'])})" if len(kept) else "")
            + ("" if flipped.empty else "; it differs within " + "; ".join(
                f"{num(row.budget)} (undistilled {row.undistilled_order}, distilled {row.distilled_order})"
                for row in flipped.itertuples()))
            + ". So the ordering " + ("survives distillation." if flipped.empty else
                                      "does not survive distillation everywhere." if len(kept) else
                                      "does not survive distillation.")
        )
    if table.empty:
        return sentences
    crossing = overtaken_at(table, "undistilled")
    distilled_wins = table.loc[table["winner"] == "distilled", "budget"]
    best_at = table.set_index("budget")
    if crossing is not None:
        below = best_at.loc[distilled_wins.iloc[-1]]
        above = best_at.loc[crossing]
        sentences.append(
            f"The frontiers cross at sampling cost {num(crossing)}: from there on the best undistilled configuration "
            f"({labels[above['model_undistilled']]}, {int(above['steps_undistilled'])} steps, {name} "
            f"{num(above['value_undistilled'])}) beats the best distilled one ({labels[above['model_distilled']]}, "
            f"{name} {num(above['value_distilled'])}); the distilled best last wins within {num(below.name)} "
            f"({labels[below['model_distilled']]}, {int(below['steps_distilled'])} steps)."
            + _paired_note(above, "distilled minus undistilled"))
    elif distilled_wins.empty:
        sentences.append("The frontiers do not cross: the undistilled best is as good or better within every budget "
                         "both ladders fit.")
    else:
        sentences.append(f"The frontiers do not cross in this table: the distilled best still wins within "
                         f"{num(distilled_wins.iloc[-1])}, the largest budget at which one ladder wins.")
    return sentences
