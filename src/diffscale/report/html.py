"""The report page: figures, tables and a reading of each, computed from `metrics.csv`."""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from diffscale.atomic import write_text
from diffscale.report import frontier, mei2024, plots

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.5; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; border: 1px solid #eee; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
.reading { background: #f7f9fc; border-left: 4px solid #3b528b; padding: 0.6em 1em; }
"""


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=_fmt, border=0) if not frame.empty else "<p>(no data)</p>"


def _figure(path: Path | None, out_dir: Path, alt: str) -> str:
    return f'<img src="{path.relative_to(out_dir)}" alt="{html.escape(alt)}">' if path else "<p>(not enough data for this figure)</p>"


def reading_steps(best: pd.DataFrame) -> str:
    """How FID moves with steps for the smallest and largest model, per sampler."""
    fid = best[best["metric"] == "fid"]
    sentences = []
    for sampler, rows in fid.groupby("sampler"):
        if rows["steps"].nunique() < 2:
            continue
        for model in (rows.sort_values("params")["model"].iloc[0], rows.sort_values("params")["model"].iloc[-1]):
            line = rows[rows["model"] == model].sort_values("steps")
            lo, hi = line.iloc[0], line.iloc[-1]
            bestrow = line.loc[line["value"].idxmin()]
            sentences.append(
                f"{sampler}, {model}: FID {_fmt(lo['value'])} at {lo['steps']} steps, {_fmt(hi['value'])} at {hi['steps']} "
                f"(best {_fmt(bestrow['value'])} at {bestrow['steps']})."
            )
        top_steps = rows["steps"].max()
        at_top = rows[rows["steps"] == top_steps]
        rho = frontier.rank_correlation(at_top["params"], at_top["value"])
        sentences.append(f"At {top_steps} {sampler} steps the rank correlation of model size with FID is {rho:+.2f} "
                         f"({'bigger is better' if rho < -0.5 else 'no clear size ordering' if rho < 0.5 else 'bigger is worse'}).")
    return " ".join(sentences)


def reading_budget(per_budget: pd.DataFrame, changes: pd.DataFrame) -> str:
    if per_budget.empty:
        return "No FID was measured, so no budget comparison."
    first = per_budget.iloc[0]
    text = (f"At the smallest budget ({_fmt(first['budget'])}) the best model is {first['best_model']}. ")
    if changes.empty:
        text += f"It stays the best at every budget up to {_fmt(per_budget['budget'].max())}."
    else:
        steps = "; ".join(f"at cost {_fmt(r.budget)} {r.to_model} overtakes {r.from_model}" for r in changes.itertuples())
        text += f"The winner changes {len(changes)} time(s): {steps}."
    smallest_winner = per_budget.sort_values("params").iloc[0]
    text += (f" Mei et al. find the same shape on COCO: at a sampling cost of 3 the 83M model beats the 866M one, and "
             f"larger models win only with larger budgets. Here the smallest model that ever wins is "
             f"{smallest_winner['best_model']}.")
    return text


def reading_guidance(best: pd.DataFrame) -> str:
    fid = best[best["metric"] == "fid"]
    if fid["best_guidance"].nunique() < 2:
        return "The best guidance is the same everywhere (or only one scale was swept)."
    by_steps = fid.groupby("steps")["best_guidance"].mean()
    rho_steps = frontier.rank_correlation(pd.Series(by_steps.index), by_steps)
    by_size = fid.groupby("params")["best_guidance"].mean()
    rho_size = frontier.rank_correlation(pd.Series(by_size.index), by_size)
    return (f"Mean best guidance is {_fmt(by_steps.iloc[0])} at {by_steps.index[0]} steps and {_fmt(by_steps.iloc[-1])} at "
            f"{by_steps.index[-1]} (rank correlation with steps {rho_steps:+.2f}; with model size {rho_size:+.2f}). "
            f"Mei et al. report that more steps lower the best guidance and bigger models raise it.")


def reading_paper(toy_table1: pd.DataFrame) -> str:
    if toy_table1.empty or "fid" not in toy_table1:
        return "No toy Table 1 at the reference step count."
    toy = frontier.rank_correlation(toy_table1["params"], toy_table1["fid"])
    paper_table = mei2024.table1()
    paper = frontier.rank_correlation(paper_table["params"], paper_table["fid"])
    verdict = "reproduces" if toy < -0.5 else "does not reproduce"
    return (f"Rank correlation of size with FID at the reference steps: toy {toy:+.2f}, paper {paper:+.2f}. The toy ladder "
            f"{verdict} the paper's monotone gain with size. The toy spans {_fmt(toy_table1['params'].max() / toy_table1['params'].min())}x "
            f"in parameters (the paper 128x) and is trained for minutes, so its small models are much further from "
            f"convergence than the paper's.")


def reading_frontier(front: pd.DataFrame) -> str:
    if front.empty:
        return "No frontier."
    parts = [f"{r.model} {r.sampler} {r.steps} steps g{r.guidance:g} ({_fmt(r.gflops_per_image)} GFLOPs, FID {_fmt(r.value)})"
             for r in front.itertuples()]
    return "From cheapest to best: " + "; ".join(parts) + "."


def build_report(metrics_csv: Path, out_dir: Path, title: str, reference_steps: int | None = None,
                 reference_model: str | None = None) -> Path:
    df = pd.read_csv(metrics_csv)
    out_dir = Path(out_dir)
    figures, tables = out_dir / "figures", out_dir / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    no_search = df[df["search"] == "none"]
    fid_prompts = df.loc[df["metric"] == "fid", "prompt_set"].unique()
    main = no_search[no_search["prompt_set"].isin(fid_prompts)] if len(fid_prompts) else no_search
    best = frontier.best_guidance(main, "fid")
    per_budget = frontier.best_model_per_budget(best, "fid") if not best.empty else pd.DataFrame()
    changes = frontier.crossovers(per_budget) if not per_budget.empty else pd.DataFrame()
    steps = reference_steps or int(main["steps"].max())
    sampler = "ddim" if (main["sampler"] == "ddim").any() else sorted(main["sampler"].unique())[0]
    toy_table1 = frontier.table1(main, steps, sampler, reference_model)
    front = frontier.joint_frontier(main, "fid") if (main["metric"] == "fid").any() else pd.DataFrame()
    for name, frame in (("best_model_per_budget", per_budget), ("crossovers", changes), ("table1", toy_table1),
                        ("frontier_fid", front)):
        write_text(tables / f"{name}.csv", frame.to_csv(index=False, float_format="%.6g"))
    maps = {s: frontier.guidance_map(main, s) for s in sorted(main["sampler"].unique())}
    for s, table in maps.items():
        write_text(tables / f"best_guidance_{s}.csv", table.to_csv(float_format="%.6g"))

    sections = [
        ("Quality vs sampling steps", plots.quality_vs_steps(main, figures), reading_steps(best), None),
        ("Best quality vs sampling cost (the headline)", plots.quality_vs_cost(main, figures),
         reading_budget(per_budget, changes), per_budget),
        (f"Table 1 analogue ({sampler}, {steps} steps, FID-best guidance)", None, "", toy_table1),
        ("Best guidance per model and steps", plots.guidance_heatmap(main, figures), reading_guidance(best), None),
        ("Comparison with Mei et al.", plots.paper_comparison(toy_table1, figures), reading_paper(toy_table1), None),
        ("The joint frontier (FID vs GFLOPs per image)", plots.joint_frontier_plot(main, figures), reading_frontier(front), front),
    ]
    body = [f"<h1>{html.escape(title)}</h1>",
            f"<p>{df['cell'].nunique()} cells, {df['model'].nunique()} models, samplers {', '.join(sorted(df['sampler'].unique()))}. "
            "Every number below is computed from <code>metrics.csv</code>; intervals are 95% bootstrap CIs over the images. "
            "FID/KID use the toy oracle's features (torch-fidelity), CLIPScore is the raw cosine of the toy open_clip model.</p>"]
    for heading, figure, reading, table in sections:
        body.append(f"<h2>{html.escape(heading)}</h2>")
        if figure is not None or heading.startswith(("Quality", "Best", "Comparison", "The joint")):
            body.append(_figure(figure, out_dir, heading))
        if reading:
            body.append(f'<p class="reading">{html.escape(reading)}</p>')
        if table is not None:
            body.append(_table(table))
        if heading.startswith("Best quality") and not changes.empty:
            body.append("<h3>Crossover budgets</h3>" + _table(changes))
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n"
    write_text(out_dir / "index.html", page)
    return out_dir / "index.html"
