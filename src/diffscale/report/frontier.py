"""Analysis of the tidy table: best guidance, best model per budget, crossovers, the frontier.

Pure pandas on `metrics.csv`, so the report and the tests read the same numbers.
"""

from __future__ import annotations

import pandas as pd

LOWER_IS_BETTER = {"fid", "kid"}
CONFIG = ["model", "params", "sampler", "steps", "search", "verifier", "search_budget", "prompt_set"]


def better(metric: str) -> bool:
    """True when higher values of `metric` are better."""
    return metric not in LOWER_IS_BETTER


def _pick(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows sorted best first; ties go to the lower guidance, then the cheaper configuration."""
    ascending = not better(metric)
    return frame.sort_values(["value", "guidance", "gflops_per_image"], ascending=[ascending, True, True], kind="mergesort")


def best_guidance(df: pd.DataFrame, metric: str = "fid") -> pd.DataFrame:
    """Per (model, sampler, steps, search...), the cell whose guidance gives the best `metric`.

    Mei et al. sweep the guidance scale at every (model, steps) and keep the best FID; every metric of
    the chosen cell is kept, so CLIPScore is read at the FID-best guidance.
    """
    scored = df[df["metric"] == metric]
    if scored.empty:
        return df.iloc[0:0].assign(best_guidance=pd.Series(dtype=float))
    chosen = _pick(scored, metric).groupby(CONFIG, sort=False, dropna=False).head(1)
    best = chosen.set_index("cell")["guidance"].rename("best_guidance")
    return df[df["cell"].isin(best.index)].join(best, on="cell").reset_index(drop=True)


def best_model_per_budget(best: pd.DataFrame, metric: str = "fid", cost: str = "relative_cost") -> pd.DataFrame:
    """For every budget present in the data, the model with the best `metric` at a cost within it."""
    points = best[best["metric"] == metric]
    rows = []
    for budget in sorted(points[cost].unique()):
        affordable = _pick(points[points[cost] <= budget + 1e-12], metric)
        per_model = affordable.groupby("model", sort=False).head(1)
        winner = per_model.iloc[0]
        rows.append({
            "budget": budget, "best_model": winner["model"], "params": int(winner["params"]), metric: winner["value"],
            "ci_low": winner["ci_low"], "ci_high": winner["ci_high"], "sampler": winner["sampler"],
            "steps": int(winner["steps"]), "guidance": winner["guidance"], "models_compared": len(per_model),
        })
    return pd.DataFrame(rows)


def crossovers(best_per_budget: pd.DataFrame) -> pd.DataFrame:
    """The budgets at which the winning model changes."""
    changes = best_per_budget["best_model"].ne(best_per_budget["best_model"].shift())
    changes.iloc[:1] = False
    previous = best_per_budget["best_model"].shift()
    out = best_per_budget[changes].assign(from_model=previous[changes])
    return out.rename(columns={"best_model": "to_model"})[["budget", "from_model", "to_model"]].reset_index(drop=True)


def table1(df: pd.DataFrame, reference_steps: int, sampler: str, reference_model: str | None = None) -> pd.DataFrame:
    """The paper's Table 1 for the toy ladder: size, cost per NFE, normalised cost, FID and CLIPScore."""
    best = best_guidance(df[(df["sampler"] == sampler) & (df["steps"] == reference_steps) & (df["search"] == "none")])
    if best.empty:
        return pd.DataFrame()
    wide = best.pivot_table(index=["model", "params", "gflops_per_nfe", "best_guidance"], columns="metric", values="value")
    wide = wide.reset_index().sort_values("params")
    reference = reference_model or wide.iloc[-1]["model"]
    reference_gflops = wide.loc[wide["model"] == reference, "gflops_per_nfe"].iloc[0]
    wide.insert(3, "normalized_cost", wide["gflops_per_nfe"] / reference_gflops)
    columns = ["model", "params", "gflops_per_nfe", "normalized_cost", "best_guidance"]
    columns += [m for m in ("fid", "clip_score", "compositional_accuracy") if m in wide]
    return wide[columns].reset_index(drop=True)


def guidance_map(df: pd.DataFrame, sampler: str, metric: str = "fid") -> pd.DataFrame:
    """Model x steps table of the best guidance scale."""
    best = best_guidance(df[(df["sampler"] == sampler) & (df["search"] == "none")], metric)
    chosen = best[best["metric"] == metric]
    if chosen.empty:
        return pd.DataFrame()
    table = chosen.pivot_table(index=["params", "model"], columns="steps", values="best_guidance")
    return table.sort_index().droplevel("params")


def joint_frontier(df: pd.DataFrame, metric: str, cost: str = "gflops_per_image") -> pd.DataFrame:
    """Configurations that are best at their cost: each one beats everything at most as expensive."""
    points = _pick(df[df["metric"] == metric], metric).sort_values(cost, kind="mergesort")
    frontier, best_so_far = [], None
    for _, row in points.iterrows():
        value = row["value"]
        if best_so_far is None or (value > best_so_far if better(metric) else value < best_so_far):
            frontier.append(row)
            best_so_far = value
    columns = [cost, "value", "ci_low", "ci_high", "model", "sampler", "steps", "guidance", "search", "verifier", "search_budget", "cell"]
    return pd.DataFrame(frontier)[columns].reset_index(drop=True) if frontier else pd.DataFrame(columns=columns)


def rank_correlation(x: pd.Series, y: pd.Series) -> float:
    """Spearman's rho, as the Pearson correlation of ranks: does y fall as x grows?"""
    return float(pd.Series(x.to_numpy()).rank().corr(pd.Series(y.to_numpy()).rank()))
