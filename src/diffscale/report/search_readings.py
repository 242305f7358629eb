"""What search over initial noises bought, in sentences that say where this study agrees with Ma et al.

Ma et al., "Inference-Time Scaling for Diffusion Models beyond Scaling Denoising Steps" (arXiv:2501.09732).
Each function turns numbers of `report.search_analysis` into readings; none draws or writes anything.
"""

from __future__ import annotations

import pandas as pd

from diffscale.report.analysis import headline_metrics, model_labels, model_order, primary_metric
from diffscale.report.metrics import higher_is_better, metric_name
from diffscale.report.search_analysis import (
    BUDGET_VERIFIER,
    FAIR_COST,
    INDEPENDENT_METRIC,
    algorithm_order,
    equal_compute_summary,
    metric_order,
    search_cells,
    search_lines,
    verifier_gains,
)
from diffscale.report.text import agreement, capitalized, num, pct, search_label

MA = "Ma et al."


def scaling_readings(df: pd.DataFrame) -> list[str]:
    """Per model and headline metric: the best value search reached at the largest budget, against its own
    no-search baseline, and Ma et al.'s algorithm ranking (random search best on text-to-image) checked on the
    independent metric. The best is the best value, not the largest relative gain, which a weaker baseline (FK
    steering's DDPM) inflates."""
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
            best = top.sort_values(["value"], ascending=not higher_is_better(metric), kind="mergesort").iloc[0]
            improved = int((top["relative_gain"] > 0).sum())
            parts.append(
                f"for {labels[model]} the best is {num(best['value'])}, with {search_label(best)}, against "
                f"{num(best['baseline'])} for its sampler without search ({pct(best['relative_gain'])}); {improved} "
                f"of {len(top)} search configurations improve on no search at their largest budget"
            )
        if parts:
            sentences.append(f"{capitalized(name)}: {'; '.join(parts)}.")
    judge = INDEPENDENT_METRIC if INDEPENDENT_METRIC in set(gains["metric"]) else primary_metric(lines)
    ranking = (gains[gains["metric"] == judge].dropna(subset=["relative_gain"])
               .groupby("search", sort=False)["relative_gain"].mean())
    if len(ranking) > 1:
        ranking = ranking.reindex(algorithm_order(ranking.index)).sort_values(ascending=False, kind="mergesort")
        order = ", ".join(f"{a} ({pct(g)})" for a, g in ranking.items())
        rivals = [a for a in ("zero-order", "paths") if a in ranking.index]
        claim = ""
        if "random" in ranking.index and rivals:
            # Means over verifiers, without a paired CI: an ordering to look at, not a call for or against Ma et al.
            beaten = [a for a in rivals if ranking["random"] > ranking[a]]
            above = f"that of {' and '.join(beaten)}" if beaten else f"neither {' nor '.join(rivals)}"
            claim = (f"Random search's mean gain is above {above} here (means, without a paired CI: not a call); {MA} "
                     "find random search better than zero-order search and search over paths on text-to-image at "
                     "their budget.")
        sentences.append(f"Mean gain in {metric_name(judge)} at the largest budget by algorithm, best first: {order}. "
                         f"{claim}".strip())
    return sentences


def verifier_readings(matrix: pd.DataFrame, hacking: pd.DataFrame) -> list[str]:
    """The biggest gain, verifier hacking (own metric vs the independent judge) and metrics that get worse."""
    if matrix.empty:
        return []
    stacked = matrix.stack().rename("gain").reset_index()
    stacked.columns = ["verifier", "metric", "gain"]
    best = stacked.sort_values("gain", ascending=False, kind="mergesort").iloc[0]
    sentences = [f"The biggest gain over no search at the largest budget is {pct(best['gain'])} in "
                 f"{metric_name(best['metric'])} when searching with the {best['verifier']} verifier."]
    for row in hacking.itertuples(index=False):
        own, judge = metric_name(row.own_metric), metric_name(row.independent_metric)
        if row.hacked:
            sentences.append(
                f"Verifier hacking: searching with {row.verifier} raises {own} (the same network) by "
                f"{pct(row.own_gain)} but the independent {judge} by only {pct(row.independent_gain)}.")
        else:
            sentences.append(
                f"No sign of hacking for {row.verifier}: its own {own} changes by {pct(row.own_gain)} and the "
                f"independent {judge} by {pct(row.independent_gain)}.")
    if INDEPENDENT_METRIC not in matrix:
        sentences.append(f"The table has no {metric_name(INDEPENDENT_METRIC)}, the judge that no verifier uses, so "
                         "verifier hacking cannot be read against an independent metric.")
    if not hacking.empty:
        diagonal = hacking["own_is_column_best"]
        named = ", ".join(f"{r.verifier} -> {metric_name(r.own_metric)}" for r in hacking.itertuples(index=False))
        verdict = agreement(diagonal.all(), diagonal.any())
        # Inflating its own metric most is not hacking when the independent judge rises too (`hacked` above).
        sentences.append(
            f"Each verifier raises its own metric more than any other verifier does in {int(diagonal.sum())} of "
            f"{len(hacking)} cases ({named}): this {verdict} {MA}'s finding that each verifier inflates its own "
            "metric most" + ("." if hacking["hacked"].any() else
                             ", here without hacking: the independent judge moves with it (above)."))
    worse = stacked[stacked["gain"] < 0].sort_values("gain", kind="mergesort")
    if worse.empty:
        sentences.append("No metric gets worse with any verifier at the largest budget.")
    else:
        listed = ", ".join(f"{metric_name(r.metric)} with {r.verifier} ({pct(r.gain)})"
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
                sentences.append(f"{capitalized(name)}: {labels[biggest]} has no configuration within the {unit} of "
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
            text = (f"{capitalized(name)}, {labels[small]} + search vs the best no-search configuration of "
                    f"{labels[biggest]} within the same {unit}: {per_budget}; so the small model + search {verdict}.")
            if not wins.empty:
                best = wins.sort_values(["advantage", "cost"], ascending=[False, True], kind="mergesort").iloc[0]
                text += (f" Its largest win: {search_label(best)} ({name} {num(best['value'])} at {num(best['cost'])} "
                         f"GFLOPs) vs {labels[biggest]} with {best['big_sampler']} {int(best['big_steps'])} steps, cfg "
                         f"{best['big_guidance']:g} ({num(best['big_value'])} at {num(best['big_cost'])} GFLOPs).")
            beyond = int(((pairs["outcome"] == "wins") & ~pairs["within_noise"].astype(bool)).sum())
            claim = f"{MA}, who find smaller models with search beating larger ones without search at equal compute"
            if wins.empty:
                text += f" This differs from {claim}."
            elif not beyond:
                text += (f" Every win is within the confidence intervals: a tie, which neither agrees nor disagrees "
                         f"with {claim}.")
            else:
                text += f" This agrees with {claim}, against {labels[biggest]}"
                text += _against_the_other_larger_models(mine, summary[(summary["metric"] == metric)
                                                                      & (summary["model"] == small)], biggest, labels)
            sentences.append(text)
    return sentences


def _against_the_other_larger_models(mine: pd.DataFrame, summary: pd.DataFrame, biggest: str, labels: dict) -> str:
    """The end of the agreement sentence: how the searched model fares against every other larger model, so an
    agreement found against the largest alone is said to be that."""
    others = [model for model in dict.fromkeys(mine["big_model"]) if model != biggest]
    if not others:
        return "."
    counts = summary[summary["big_model"].isin(others)].groupby("big_model", sort=False)[
        ["wins", "configurations", "wins_beyond_noise"]].sum()
    listed = ", ".join(f"{labels[m]} {int(counts.loc[m, 'wins'])} of {int(counts.loc[m, 'configurations'])} "
                       f"({int(counts.loc[m, 'wins_beyond_noise'])} beyond the CIs)" for m in others if m in counts.index)
    unbeaten = [labels[m] for m in others if m in counts.index and counts.loc[m, "wins_beyond_noise"] == 0]
    return (f"; against the other larger models it wins {listed}" + (
        f", so against {' and '.join(unbeaten)} it does not show." if unbeaten else "."))


def budget_readings(trend: pd.DataFrame, verifier: str = BUDGET_VERIFIER) -> list[str]:
    """Does FID worsen and recall fall as the oracle-verifier budget grows (Ma et al.: diversity collapse)?"""
    if trend.empty:
        return []
    sentences = []
    fid = trend[trend["metric"] == "fid"]
    if not fid.empty:
        worse = fid[fid["worse_at_largest"]]
        listed = ", ".join(f"{r.model} {r.search} (best at budget {num(r.best_budget)}: {num(r.best_value)}, "
                           f"{num(r.largest_value)} at {num(r.largest_budget)})"
                           for r in worse.itertuples(index=False))
        beyond = int(worse["beyond_noise"].sum())
        verdict = agreement(len(worse) * 2 > len(fid), len(worse))
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
        changes = ", ".join(f"{r.model} {r.search} {num(r.baseline)} -> {num(r.largest_value)}"
                            for r in recall.itertuples(index=False))
        beyond = int((falls["beyond_noise"]).sum())
        explanation = f"{MA}'s explanation that oracle search worsens FID through a loss of diversity"
        # Only falls beyond the CI count for the explanation: recall rising in most lines is not partial agreement.
        verdict = (f"This {agreement(len(falls) * 2 > len(recall), True)} {explanation}." if beyond else
                   f"No fall is beyond the CI, so this does not show {explanation}.")
        sentences.append(
            f"Recall (diversity) at the largest budget is below no search in {len(falls)} of {len(recall)} lines "
            f"({changes}; {beyond} beyond the CI). {verdict}")
    elif not fid.empty:
        sentences.append("The table has no recall with a no-search baseline, so diversity loss cannot be checked "
                         "here.")
    return sentences


def models_note(df: pd.DataFrame) -> str:
    """Which models were searched, for section notes."""
    searched = search_cells(df)
    labels = model_labels(df)
    return ", ".join(labels[m] for m in model_order(searched))
