"""The report page: every figure and table of a study, each with a reading generated from the numbers.

`build_report` reads `metrics.csv` and writes `index.html`, `figures/<prompt set>/*.png` and
`tables/<prompt set>/*.csv`. Each prompt set gets its own part of the page because scores on different
prompt sets are not comparable. The same table gives the same bytes (no timestamps, no PNG stamp).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd
from markupsafe import Markup

from diffscale.atomic import atomic_directory, write_text
from diffscale.report import figures, search
from diffscale.report.analysis import (
    HEADLINE_METRICS,
    best_guidance,
    best_model_per_budget,
    config_label,
    crossovers,
    default_reference_steps,
    default_sampler,
    guidance_map,
    headline_metrics,
    higher_is_better,
    joint_frontier,
    metric_name,
    model_labels,
    model_order,
    paper_trend_comparison,
    primary_metric,
    rank_correlation,
    table1,
    trend_agreement,
    without_search,
)
from diffscale.report.paper import PAPER

STRING_COLUMNS = ["cell", "study", "model", "sampler", "search", "verifier", "prompt_set", "metric"]
# Mei et al.'s headline budget: at sampling cost 3 their 83M model beats the 866M one.
PAPER_HEADLINE_COST = 3.0
# The frontier of the primary metric is drawn in each unit; other metrics in GFLOPs only.
FRONTIER_COSTS = {"gflops_per_image": "GFLOPs per image", "nfe_per_image": "NFEs per image",
                  "seconds_per_image": "seconds per image"}
# With search, the fair cost also pays for the verifier: every headline metric is drawn against it too.
TOTAL_COST = {"total_gflops_per_image": "total GFLOPs per image (denoiser + verifier)"}


def load_metrics(path: Path) -> pd.DataFrame:
    """Read `metrics.csv` keeping "none" (no search, no verifier) a string rather than NaN."""
    return pd.read_csv(path, dtype=dict.fromkeys(STRING_COLUMNS, str), keep_default_na=False,
                       na_values=["", "nan", "NaN"])


def _num(value: float) -> str:
    """Three significant digits, without exponents for large numbers (1,000 rather than 1e+03)."""
    if pd.isna(value):
        return "n/a"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def _trend(rho: float) -> str:
    """A rank correlation in words."""
    if pd.isna(rho) or rho == 0:
        return "does not change"
    direction = "rises" if rho > 0 else "falls"
    return direction if abs(rho) >= 0.5 else f"{direction} weakly"


def _change(before: float, after: float) -> str:
    """'falls from 30 to 10.8', 'rises from ...', or 'stays at 0'."""
    if before == after:
        return f"stays at {_num(before)}"
    return f"{'rises' if after > before else 'falls'} from {_num(before)} to {_num(after)}"


def _winner(frame: pd.DataFrame, metric: str) -> str:
    """The model with the best value in `frame` (ties: the smaller model)."""
    ranked = frame.sort_values(["value", "params"], ascending=[not higher_is_better(metric), True], kind="mergesort")
    return ranked["model"].iloc[0]


def _runs(values: pd.Series) -> list[str]:
    """Consecutive duplicates collapsed: a, a, b, a -> a, b, a."""
    return values[values.ne(values.shift())].tolist()


@dataclass
class Section:
    """One heading of the page: figures, readings, notes and tables in the order they were added."""

    title: str
    parts: list[tuple[str, object]] = field(default_factory=list)

    def reading(self, text: str) -> None:
        self.parts.append(("reading", text))

    def note(self, text: str) -> None:
        self.parts.append(("note", text))

    def table(self, caption: str, table: pd.DataFrame, index: bool = False) -> None:
        html = table.to_html(index=index, border=0, na_rep="", float_format=_num, classes="data")
        self.parts.append(("table", (caption, Markup(html))))  # pandas has escaped the cells


@dataclass
class PromptSetReport:
    name: str
    anchor: str
    sections: list[Section]


class _Writer:
    """Saves one prompt set's figures and tables under the report folder; links figures into sections."""

    def __init__(self, figures_root: Path, tables_root: Path, prompt_set: str):
        self.prompt_set = prompt_set
        self.slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", prompt_set)
        self.figure_dir = figures_root / self.slug
        self.table_dir = tables_root / self.slug

    def add_figure(self, section: Section, path: Path | None, missing: str) -> None:
        if path is None:
            section.note(f"No figure: {missing}")
        else:
            section.parts.append(("figure", f"figures/{self.slug}/{path.name}"))

    def save_table(self, name: str, table: pd.DataFrame, index: bool = False) -> None:
        write_text(self.table_dir / f"{name}.csv", table.to_csv(index=index, float_format="%.6g"))


def _steps_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Quality vs sampling steps")
    writer.add_figure(section, figures.quality_vs_steps(df, writer.figure_dir),
                      "no sampler was run at two step counts.")
    metric = primary_metric(df)
    points = best_guidance(without_search(df), metric)
    points = points[points["metric"] == metric]
    labels = model_labels(df)
    for sampler, frame in points.groupby("sampler", sort=False):
        if frame["steps"].nunique() < 2:
            continue
        few, many = frame["steps"].min(), frame["steps"].max()
        changes = []
        for model in dict.fromkeys((model_order(frame)[0], model_order(frame)[-1])):
            line = frame[frame["model"] == model].set_index("steps")["value"]
            if {few, many} <= set(line.index):
                changes.append(f"{_change(line[few], line[many])} for {labels[model]}")
        first, last = (labels[_winner(frame[frame["steps"] == s], metric)] for s in (few, many))
        best = (f"{first} is the best model at both {few} and {many} steps" if first == last
                else f"the best model is {first} at {few} steps and {last} at {many} steps")
        section.reading(
            f"With {sampler}, as steps go from {few} to {many}, {metric_name(metric)} {' and '.join(changes)}; {best}."
        )
    return section


def _cost_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Best quality vs sampling cost (headline)")
    metric = primary_metric(df)
    name = metric_name(metric)
    writer.add_figure(section, figures.quality_vs_cost(df, writer.figure_dir, metric),
                      "fewer than two configurations.")
    best = best_model_per_budget(without_search(df), metric)
    changes = crossovers(best)
    writer.save_table(f"best_per_budget_{metric}", best)
    writer.save_table(f"crossovers_{metric}", changes)
    if best.empty:
        section.note(f"No configuration has a {name} score.")
        return section
    labels = model_labels(df)
    first, last = best.iloc[0], best.iloc[-1]
    if len(best) == 1:
        section.note(f"Only one configuration has a {name} score: {config_label(first)} ({_num(first['value'])}).")
        return section
    section.reading(
        f"Sampling cost (normalized model cost x steps; one step of the reference model costs 1; CFG not counted) "
        f"runs from {_num(first['budget'])} to {_num(last['budget'])}. Within the smallest budget the best {name} is "
        f"{_num(first['value'])}, from {config_label(first)}; within the largest it is {_num(last['value'])}, from "
        f"{config_label(last)}."
    )
    if changes.empty:
        section.reading(f"The same model, {labels[first['model']]}, is best at every budget.")
    else:
        steps = [f"from {labels[c.from_model]} to {labels[c.to_model]} at sampling cost {_num(c.budget)}"
                 for c in changes.itertuples()]
        at_change = best[best["budget"].isin(changes["budget"])]
        within_noise = int(at_change["runner_up_value"].between(at_change["ci_low"], at_change["ci_high"]).sum())
        noise = ("each new winner is ahead by more than its confidence interval" if within_noise == 0 else
                 f"at {within_noise} of these {len(changes)} budgets the runner-up's {name} lies inside the "
                 f"winner's confidence interval, so the change there is within noise")
        section.reading(f"The best model changes {'; '.join(steps)}. {_capitalized(noise)}.")
    if first["budget"] <= PAPER_HEADLINE_COST:
        at_headline = best[best["budget"] <= PAPER_HEADLINE_COST].iloc[-1]
        verdict = ("the largest model, unlike the paper" if at_headline["model"] == model_order(df)[-1]
                   else "a smaller model than the largest, as in the paper")
        section.reading(
            f"At sampling cost {PAPER_HEADLINE_COST:g}, where {PAPER} find their 83M model best, the best model here "
            f"is {labels[at_headline['model']]} with {int(at_headline['steps'])} steps: {verdict}."
        )
    columns = ["budget", "model", "sampler", "steps", "guidance", "value", "ci_low", "ci_high", "runner_up",
               "runner_up_value"]
    section.table(f"Best model within each sampling-cost budget ({name})",
                  best[columns].rename(columns={"value": metric}))
    return section


def _table1_section(
    df: pd.DataFrame, writer: _Writer, sampler: str, steps: int, reference_model: str | None, note: str | None
) -> Section:
    section = Section("Table 1 analogue")
    if note:
        section.note(note)
    metric = primary_metric(df)
    table = table1(df, steps, sampler, reference_model, metric)
    writer.save_table("table1", table)
    if table.empty:
        section.note(f"No {sampler} cells at {steps} steps.")
        return section
    if len(table) > 1:
        section.reading(_table1_reading(table, model_labels(df), sampler, steps, metric))
    section.table(f"Per model at {steps} {sampler} steps, best guidance by {metric_name(metric)}; normalized cost = "
                  "GFLOPs per NFE / the reference model's", table)
    return section


def _table1_reading(table: pd.DataFrame, labels: dict[str, str], sampler: str, steps: int, metric: str) -> str:
    smallest, largest = labels[table["model"].iloc[0]], labels[table["model"].iloc[-1]]
    sentences = []
    for name in [m for m in HEADLINE_METRICS if m in table]:
        change = _change(table[name].iloc[0], table[name].iloc[-1])
        rho = rank_correlation(table["params"], table[name])
        sentences.append(f"{metric_name(name)} {change} between {smallest} and {largest} (Spearman rho with size "
                         f"{_num(rho)})")
    best = labels[_winner(table.rename(columns={metric: "value"}), metric)]
    return (f"At {steps} {sampler} steps, with the guidance that gives the best {metric_name(metric)}: "
            f"{'; '.join(sentences)}. The best {metric_name(metric)} comes from {best}.")


def _guidance_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Best guidance map")
    metric = primary_metric(df)
    writer.add_figure(section, figures.guidance_heatmap(df, writer.figure_dir, metric),
                      "no sampler swept more than one guidance scale.")
    sizes = df.drop_duplicates("model").set_index("model")["params"]
    for sampler in without_search(df)["sampler"].unique():
        table = guidance_map(df, sampler, metric)
        writer.save_table(f"guidance_map_{sampler}", table, index=True)
        cells = table.stack().rename("guidance").reset_index()
        if cells["guidance"].nunique() < 2:
            continue
        by_steps = rank_correlation(cells["steps"], cells["guidance"])
        by_size = rank_correlation(cells["model"].map(sizes), cells["guidance"])
        section.reading(
            f"With {sampler}, the best guidance ranges from {_num(cells['guidance'].min())} to "
            f"{_num(cells['guidance'].max())}. It {_trend(by_steps)} with more steps (Spearman rho {_num(by_steps)}; "
            f"in the paper it falls) and {_trend(by_size)} with model size (rho {_num(by_size)}; in the paper it rises)."
        )
    return section


def _paper_section(
    df: pd.DataFrame, writer: _Writer, sampler: str, steps: int, reference_model: str | None
) -> Section:
    section = Section("Comparison with the paper")
    writer.add_figure(section, figures.paper_comparison(df, writer.figure_dir, steps, sampler, reference_model),
                      f"fewer than two models at {steps} {sampler} steps.")
    labels = model_labels(df)
    for metric in [m for m in ("fid", "clip_score") if m in set(df["metric"])]:
        comparison = paper_trend_comparison(df, steps, sampler, metric, reference_model)
        writer.save_table(f"paper_comparison_{metric}", comparison)
        agreement = trend_agreement(comparison).set_index("source")
        if "toy" not in agreement.index or agreement.loc["toy", "models"] < 2:
            continue
        toy, paper = agreement.loc["toy"], agreement.loc["paper"]
        name = metric_name(metric)
        resolved = abs(toy["spread"]) > toy["median_ci_width"]
        noise = (f"the change from the smallest to the largest model ({_num(toy['spread'])}) "
                 f"{'exceeds' if resolved else 'is within'} the typical confidence-interval width "
                 f"({_num(toy['median_ci_width'])})")
        if toy["agrees_with_paper"]:
            better = "higher" if higher_is_better(metric) else "lower"
            reason = f"bigger models reach {better} {name} in both, and {noise}"
        elif not resolved:
            reason = f"{noise}, so the toy ladder does not resolve a size effect at this sample size"
        else:
            reason = f"its best {name} comes from {labels[toy['best']]}, not from its largest model"
        section.reading(
            f"{name} at {steps} {sampler} steps: Spearman rho(size, {name}) is {_num(toy['spearman_size'])} for the "
            f"toy ladder and {_num(paper['spearman_size'])} in {PAPER} (50 DDIM steps). The toy trend "
            f"{'agrees' if toy['agrees_with_paper'] else 'disagrees'} with the paper: {reason}."
        )
    return section


def _frontier_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Joint frontier: model size, steps, guidance and search")
    primary = primary_metric(df)
    headline = headline_metrics(df) or [primary]
    plans = [(metric, "gflops_per_image") for metric in headline]
    if search.has_search(df):
        if search.fair_cost(df) == search.FAIR_COST:
            plans += [(metric, search.FAIR_COST) for metric in headline]
        else:
            section.note("The table has no verifier GFLOPs (total_gflops_per_image), so search is drawn at its "
                         "denoiser cost only, which undercounts it.")
    plans += [(primary, cost) for cost in FRONTIER_COSTS if cost != "gflops_per_image"]
    for metric, cost in plans:
        frontier = joint_frontier(df, metric, cost)
        writer.save_table(f"frontier_{metric}_{cost}", frontier)
        figure = figures.joint_frontier_plot(df, writer.figure_dir, metric, cost)
        missing = f"fewer than two configurations with {metric_name(metric)} and {_cost_unit(cost)}."
        writer.add_figure(section, figure, missing)
        if figure is not None:
            section.reading(_frontier_reading(df, frontier, metric, cost))
    return section


def _cost_unit(cost: str) -> str:
    return {**FRONTIER_COSTS, **TOTAL_COST}.get(cost, cost.replace("_", " "))


def _frontier_reading(df: pd.DataFrame, frontier: pd.DataFrame, metric: str, cost: str) -> str:
    unit, name = _cost_unit(cost), metric_name(metric)
    best = frontier.iloc[-1]
    if len(frontier) == 1:
        summary = (f"one configuration is both the cheapest and the best ({name} {_num(best['value'])}): "
                   f"{config_label(best)}.")
    else:
        path = _runs(frontier["model"].map(model_labels(df)))
        models = f"the model goes {' -> '.join(path)}" if len(path) > 1 else f"every point uses {path[0]}"
        summary = (f"the frontier has {len(frontier)} configurations from {_num(frontier[cost].iloc[0])} to "
                   f"{_num(best[cost])} {unit}; along it {models}. The best {name}, {_num(best['value'])}, comes from "
                   f"{config_label(best)}.")
    searches = frontier[frontier["search"] != "none"]
    if (df["search"] == "none").all():
        search_note = "The study has no search cells."
    elif searches.empty:
        search_note = "No search configuration is on it: more steps or a bigger model buy more at every budget."
    else:
        verb = "uses" if len(searches) == 1 else "use"
        search_note = (f"{len(searches)} of its {len(frontier)} points {verb} search, the first at "
                       f"{_num(searches[cost].iloc[0])} {unit}: {config_label(searches.iloc[0])}.")
    return f"{_capitalized(name)} against {unit}: {summary} {search_note}"


def _search_sections(df: pd.DataFrame, writer: _Writer) -> list[Section]:
    """Ma et al.'s questions, each search configuration read against its no-search baseline; none without search."""
    if not search.has_search(df):
        return []
    return [_search_scaling_section(df, writer), _search_verifier_section(df, writer),
            _search_equal_compute_section(df, writer), _search_budget_section(df, writer)]


def _search_scaling_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Search: scaling with compute")
    section.note(f"Search over initial noises with {search.models_note(df)}. Each line is one algorithm and verifier "
                 "at fixed sampler, steps and guidance; it starts at the same configuration without search (cross).")
    for cost in ("nfe_per_image", search.fair_cost(df)):
        writer.add_figure(section, search.scaling_curves(df, writer.figure_dir, cost),
                          f"no search configuration with a headline metric and {_cost_unit(cost)}.")
    writer.save_table("search_scaling", search.search_lines(df))
    for text in search.scaling_readings(df):
        section.reading(text)
    return section


def _search_verifier_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Search: verifiers vs evaluation metrics")
    gains = search.verifier_gains(df)
    matrix = search.verifier_metric_matrix(gains)
    per_algorithm = search.verifier_metric_matrix(gains, by=["search"])
    hacking = search.verifier_hacking(matrix)
    writer.save_table("search_gains", gains)
    writer.save_table("search_verifier_matrix", matrix, index=True)
    writer.save_table("search_verifier_matrix_by_algorithm", per_algorithm, index=True)
    writer.save_table("search_verifier_hacking", hacking)
    writer.add_figure(section, search.verifier_matrix_plot(df, writer.figure_dir),
                      "no search configuration has a no-search baseline.")
    for text in search.verifier_readings(matrix, hacking):
        section.reading(text)
    if not matrix.empty:
        shown = matrix.rename(columns=metric_name).map(lambda v: "" if pd.isna(v) else f"{v:+.1%}")
        section.table("Relative change over no search at the largest budget (positive = better), mean over models "
                      "and algorithms; rows: search verifier", shown, index=True)
    return section


def _search_equal_compute_section(df: pd.DataFrame, writer: _Writer) -> Section:
    section = Section("Search: small model + search vs bigger model at equal compute")
    comparison = search.equal_compute(df)
    summary = search.equal_compute_summary(comparison)
    writer.save_table("search_equal_compute", comparison)
    writer.save_table("search_equal_compute_summary", summary)
    writer.add_figure(section, search.equal_compute_plot(df, writer.figure_dir),
                      "no searched model has a bigger model with a no-search configuration within its budget.")
    for text in search.equal_compute_readings(df, comparison):
        section.reading(text)
    headline = summary[summary["metric"].isin(headline_metrics(df))]
    if not headline.empty:
        section.table("Small model + search vs the best no-search configuration of each bigger model within the same "
                      "cost: search configurations won, lost, tied and unaffordable per budget", headline)
    return section


def _search_budget_section(df: pd.DataFrame, writer: _Writer) -> Section:
    verifier = search.BUDGET_VERIFIER
    section = Section(f"Search: FID and diversity vs budget ({verifier} verifier)")
    effect = search.budget_effect(df, verifier)
    trend = search.budget_trend(effect)
    writer.save_table(f"search_budget_{verifier}", effect)
    writer.save_table(f"search_budget_trend_{verifier}", trend)
    writer.add_figure(section, search.budget_plot(df, writer.figure_dir, verifier),
                      f"no search with the {verifier} verifier scored by FID or recall.")
    for text in search.budget_readings(trend, verifier):
        section.reading(text)
    if not trend.empty:
        columns = ["model", "search", "sampler", "steps", "metric", "baseline", "best_budget", "best_value",
                   "largest_budget", "largest_value", "largest_ci_low", "largest_ci_high", "worse_at_largest"]
        section.table(f"Per search line with the {verifier} verifier: no search, the best budget and the largest",
                      trend[columns])
    return section


def _prompt_set_report(
    df: pd.DataFrame, writer: _Writer, reference_steps: int | None, reference_model: str | None
) -> PromptSetReport:
    """Mei et al.'s sections need plain (no-search) cells; the joint frontier takes every cell."""
    sections = []
    plain = without_search(df)
    if not plain.empty:
        sampler = default_sampler(plain)
        steps, note = reference_steps, None
        if steps not in set(plain.loc[plain["sampler"] == sampler, "steps"]):
            steps = default_reference_steps(df, sampler)
            if reference_steps is not None:
                note = (f"{sampler} was not run at {reference_steps} steps on this prompt set; this section and the "
                        f"paper comparison use {steps} steps.")
        sections = [
            _steps_section(df, writer),
            _cost_section(df, writer),
            _table1_section(df, writer, sampler, steps, reference_model, note),
            _guidance_section(df, writer),
            _paper_section(df, writer, sampler, steps, reference_model),
        ]
    sections += _search_sections(df, writer)
    sections.append(_frontier_section(df, writer))
    return PromptSetReport(writer.prompt_set, writer.slug, sections)


def _intro(df: pd.DataFrame) -> list[str]:
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
    return [
        f"Study {', '.join(df['study'].unique())}: {df['cell'].nunique()} cells. {len(order)} denoisers from "
        f"{labels[order[0]]} to {labels[order[-1]]} ({_num(sizes[order[-1]] / sizes[order[0]])}x in parameters); "
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


_TEMPLATE = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True).from_string("""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px; margin: 2em auto;
       padding: 0 1.5em; color: #222; line-height: 1.5; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2.5em; border-bottom: 1px solid #bbb; }
h3 { margin-top: 2em; }
p.reading { background: #f5f7fa; border-left: 4px solid #6a8caf; padding: .5em .8em; }
p.note { color: #666; font-style: italic; }
img { max-width: 100%; height: auto; display: block; margin: 1em 0; }
.caption { font-weight: 600; margin: 1em 0 .3em; }
.scroll { max-height: 28em; overflow: auto; border: 1px solid #ddd; display: inline-block; max-width: 100%; }
table.data { border-collapse: collapse; font-size: .85em; font-variant-numeric: tabular-nums; }
table.data th, table.data td { padding: .25em .6em; border-bottom: 1px solid #e4e4e4; text-align: right; }
table.data th { background: #f0f0f0; position: sticky; top: 0; }
</style>
</head>
<body>
<h1>{{ title }}</h1>
{% for paragraph in intro %}
<p>{{ paragraph }}</p>
{% endfor %}
<nav><ul>
{% for report in prompt_sets %}
<li>Prompt set <a href="#{{ report.anchor }}">{{ report.name }}</a>:
{% for section in report.sections %}<a href="#{{ report.anchor }}-{{ loop.index }}">{{ section.title }}</a>{{ "; " if not loop.last }}{% endfor %}
</li>
{% endfor %}
</ul></nav>
{% for report in prompt_sets %}
<h2 id="{{ report.anchor }}">Prompt set: {{ report.name }}</h2>
{% for section in report.sections %}
<h3 id="{{ report.anchor }}-{{ loop.index }}">{{ section.title }}</h3>
{% for kind, content in section.parts %}
{% if kind == "figure" %}
<img src="{{ content }}" alt="{{ section.title }}">
{% elif kind == "table" %}
<div class="caption">{{ content[0] }}</div>
<div class="scroll">{{ content[1] }}</div>
{% else %}
<p class="{{ kind }}">{{ content }}</p>
{% endif %}
{% endfor %}
{% endfor %}
{% endfor %}
</body>
</html>
""")


def build_report(
    metrics_csv: Path,
    out_dir: Path,
    title: str,
    reference_steps: int | None = None,
    reference_model: str | None = None,
) -> Path:
    """Write the report of one study into `out_dir` (index.html, figures/, tables/) and return the page's path.

    `reference_steps`: the step count of the Table 1 analogue and the paper comparison (default, or when
    not run: the longest schedule of the default sampler). `reference_model`: the model whose GFLOPs per
    NFE is cost 1 in the Table 1 analogue (default: the largest). `figures/` and `tables/` are replaced
    whole, so no stale file survives; other files in `out_dir` are left alone.
    """
    df = load_metrics(metrics_csv)
    out_dir = Path(out_dir)
    cells_per_prompt_set = df.groupby("prompt_set")["cell"].nunique().sort_values(ascending=False, kind="mergesort")
    with atomic_directory(out_dir / "figures") as figures_dir, atomic_directory(out_dir / "tables") as tables_dir:
        reports = [
            _prompt_set_report(
                df[df["prompt_set"] == name], _Writer(figures_dir, tables_dir, name), reference_steps, reference_model
            )
            for name in cells_per_prompt_set.index
        ]
    page = out_dir / "index.html"
    write_text(page, _TEMPLATE.render(title=title, intro=_intro(df), prompt_sets=reports))
    return page
