"""The parts of the page: for one prompt set, each section's figures, readings, notes and tables.

A section draws its figures (`report.figures`, `report.search_figures`), saves its tables as CSV, and
adds the readings generated from the same numbers (`report.readings`, `report.search_readings`), in the
order the page shows them. Notes say what a small study could not draw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from markupsafe import Markup

from diffscale.atomic import write_text
from diffscale.report import analysis, figures, readings, search_analysis, search_figures, search_readings
from diffscale.report.comparisons import (
    Comparisons,
    called,
    kid_inside_floor,
    ranking_checks,
    ranking_disagreements,
    with_differences,
)
from diffscale.report.headline import crossover_counts
from diffscale.report.metrics import metric_name
from diffscale.report.paper import PAPER_METRICS
from diffscale.report.text import config_label, cost_unit, flops, num

# The frontier of the primary metric is drawn in each unit; other metrics in GFLOPs only.
FRONTIER_COSTS = ("gflops_per_image", "nfe_per_image", "seconds_per_image")


@dataclass
class Section:
    """One heading of the page: figures, readings, notes and tables in the order they were added."""

    title: str
    parts: list[tuple[str, object]] = field(default_factory=list)

    def reading(self, text: str) -> None:
        self.parts.append(("reading", text))

    def readings(self, texts: list[str]) -> None:
        for text in texts:
            self.reading(text)

    def note(self, text: str) -> None:
        self.parts.append(("note", text))

    def table(self, caption: str, table: pd.DataFrame, index: bool = False) -> None:
        html = table.to_html(index=index, border=0, na_rep="", float_format=num, classes="data")
        self.parts.append(("table", (caption, Markup(html))))  # pandas has escaped the cells


@dataclass
class PromptSetReport:
    name: str
    anchor: str
    sections: list[Section]


class Writer:
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


def prompt_set_report(
    df: pd.DataFrame, writer: Writer, reference_steps: int | None, reference_model: str | None,
    comparisons: Comparisons | None = None,
) -> PromptSetReport:
    """Every section of one prompt set. Mei et al.'s sections need plain (no-search) cells; the joint frontier
    takes every cell. With `comparisons` (the cells' per-image data), winners are called by paired differences
    and FID/KID get their floor and ranking checks."""
    sections = []
    plain = analysis.without_search(df)
    if not plain.empty:
        sampler = analysis.default_sampler(plain)
        steps, note = reference_steps, None
        if steps not in set(plain.loc[plain["sampler"] == sampler, "steps"]):
            steps = analysis.default_reference_steps(df, sampler)
            if reference_steps is not None:
                note = (f"{sampler} was not run at {reference_steps} steps on this prompt set; this section and the "
                        f"paper comparison use {steps} steps.")
        sections = [
            _steps_section(df, writer, comparisons),
            _cost_section(df, writer, comparisons),
            _table1_section(df, writer, sampler, steps, reference_model, note, comparisons),
            _guidance_section(df, writer),
            _paper_section(df, writer, sampler, steps, reference_model),
            _training_section(df, writer, comparisons),
        ]
        sections += [_split_section(df, writer, split, comparisons) for split in analysis.SPLITS
                     if analysis.has_split(df, split)]
    if search_analysis.has_search(df):  # Ma et al.'s questions, each search line read against its no-search baseline
        sections += [_search_scaling_section(df, writer), _search_verifier_section(df, writer),
                     _search_equal_compute_section(df, writer, comparisons), _search_budget_section(df, writer)]
    sections.append(_frontier_section(df, writer))
    return PromptSetReport(writer.prompt_set, writer.slug, sections)


# Per split of `analysis.SPLITS`: the section's title and what its note says about how the two ladders compare.
SPLIT_SECTIONS = {
    "kind": ("Flow matching vs diffusion at equal cost",
             "Each sampler serves one kind of model (diffusion samplers: a noise schedule; flow samplers: rectified "
             "flow), so the per-sampler panels of the headline figure are the two ladders; cost is the headline's "
             "sampling cost for both (normalized model cost x evaluations, the CFG pair not counted)."),
    "distillation": ("Distilled vs undistilled at equal cost",
                     "A model whose entry declares `distilled_from` is in the distilled ladder (dashed lines, the "
                     "teacher's colour, 'distilled' in its label); every other model is undistilled. Cost is the "
                     "headline's sampling cost for both, as in Mei et al. (normalized model cost x evaluations, the CFG "
                     "pair not counted): a student's step costs what its guided teacher's step costs. In GFLOPs per "
                     "image (the joint frontier below) a student that takes guidance as an input, or none, costs half "
                     "as much per step as a guided teacher."),
}


def _split_section(df: pd.DataFrame, writer: Writer, split: str, comparisons: Comparisons | None) -> Section:
    """Two ladders of models at equal sampling cost (`analysis.SPLITS`), each ladder's own crossovers, and for
    distillation whether the size ordering survives it and where the frontiers cross."""
    first, second = analysis.SPLITS[split][1]
    title, note = SPLIT_SECTIONS[split]
    section = Section(title)
    metric = analysis.primary_metric(df)
    table = with_differences(analysis.best_per_group(df, split, metric), comparisons, metric, f"cell_{second}",
                             f"cell_{first}")
    ladders = analysis.crossovers_per_group(df, split, metric)
    writer.save_table(f"{second}_vs_{first}_{metric}", table)
    for ladder, changes in ladders.items():
        writer.save_table(f"crossovers_{ladder}_{metric}", changes)
    section.note(note)
    writer.add_figure(section, figures.ladder_frontiers(df, writer.figure_dir, split, metric),
                      f"fewer than two budgets with both {first} and {second} configurations.")
    section.readings(readings.group_readings(df, split, table, ladders, metric))
    if split == "distillation":
        ordering = analysis.ordering_per_budget(df, metric)
        writer.save_table(f"distilled_ordering_{metric}", ordering)
        section.readings(readings.distillation_readings(df, table, ordering, metric))
        if not ordering.empty:
            section.table("Models best first within each budget, each ladder on its own (students named by their "
                          "teacher)", ordering.drop(columns=["metric"]))
    if not table.empty:
        columns = ["budget", f"model_{first}", f"steps_{first}", f"value_{first}", f"model_{second}", f"steps_{second}",
                   f"value_{second}", "winner"]
        if table["beyond_noise"].notna().any():
            columns += ["difference", "diff_ci_low", "diff_ci_high"]
        section.table(f"Best {metric_name(metric)} of each ladder within each budget; difference = {second} minus "
                      f"{first} with its paired CI (bootstrap over prompts)", table[columns])
    return section


def _steps_section(df: pd.DataFrame, writer: Writer, comparisons: Comparisons | None = None) -> Section:
    section = Section("Quality vs sampling steps")
    writer.add_figure(section, figures.quality_vs_steps(df, writer.figure_dir),
                      "no sampler was run at two step counts.")
    section.readings(readings.steps_readings(df, comparisons))
    return section


def _floor_note(comparisons: Comparisons | None, cell: str) -> str | None:
    """The floor of FID and KID at the cell's N, and the feature space they are measured in."""
    floors = {m: comparisons.floor(m, cell) for m in ("fid", "kid")} if comparisons is not None else {}
    if not any(floors.values()):
        return None
    shown = "; ".join(f"{metric_name(m)} {num(f['value'])} [{num(f['ci_low'])}, {num(f['ci_high'])}]"
                      for m, f in floors.items() if f)
    n = next(f["n"] for f in floors.values() if f)
    return (f"Floor (held-out real images against the reference set, N = {n}, same extractor): {shown}. Features: "
            f"{comparisons.feature_space(cell)}; a generator that matched the data would score about this.")


def _cost_section(df: pd.DataFrame, writer: Writer, comparisons: Comparisons | None = None) -> Section:
    section = Section("Best quality vs sampling cost (headline)")
    metric = analysis.primary_metric(df)
    name = metric_name(metric)
    writer.add_figure(section, figures.quality_vs_cost(df, writer.figure_dir, metric),
                      "fewer than two configurations.")
    best = analysis.best_model_per_budget(analysis.without_search(df), metric)
    changes = analysis.crossovers(best)
    # Winner against runner-up, and each crossover's new winner against the old one, paired over prompts.
    best = with_differences(best, comparisons, metric, "cell", "runner_up_cell")
    changes = with_differences(changes, comparisons, metric, "to_cell", "from_cell")
    writer.save_table(f"best_per_budget_{metric}", best)
    writer.save_table(f"crossovers_{metric}", changes)
    if best.empty:
        section.note(f"No configuration has a {name} score.")
        return section
    if len(best) == 1:
        first = best.iloc[0]
        section.note(f"Only one configuration has a {name} score: {config_label(first)} ({num(first['value'])}).")
        return section
    section.readings(readings.cost_readings(df, best, changes, metric))
    floor = _floor_note(comparisons, best["cell"].iloc[0])
    if floor:
        section.note(floor)
    sampler = analysis.default_sampler(df)
    ladder = analysis.best_model_per_budget(analysis.without_search(df[df["sampler"] == sampler]), metric)
    crossings = with_differences(analysis.crossovers(ladder), comparisons, metric, "to_cell", "from_cell")
    writer.add_figure(section, figures.crossover_frontier(df, writer.figure_dir, sampler, crossings, metric),
                      f"{sampler} has fewer than two models.")
    counts = pd.DataFrame([{"metric": metric_name(m), **c} for m, c in crossover_counts(analysis.without_search(df),
                                                                                      comparisons).items()])
    writer.save_table("crossovers_per_metric", counts)
    section.table("Size crossovers by each metric, each choosing its own guidance and winners: how many, and how many "
                  "the paired CI of new minus old winner calls (bootstrap over prompts)", counts)
    columns = ["budget", "model", "sampler", "steps", "guidance", "value", "ci_low", "ci_high", "runner_up",
               "runner_up_value"]
    if best["distilled_from"].ne("").any():  # which winners are distilled models, and of which teacher
        columns.insert(2, "distilled_from")
    if best["beyond_noise"].notna().any():
        columns += ["difference", "diff_ci_low", "diff_ci_high"]
        best = best.assign(winner_called=called(best))
        columns.append("winner_called")
    section.table(f"Best model within each sampling-cost budget ({name}); difference = winner minus runner-up "
                  "with its paired CI (bootstrap over prompts, the same prompts for both cells)",
                  best[columns].rename(columns={"value": metric}))
    return section


def _table1_section(
    df: pd.DataFrame, writer: Writer, sampler: str, steps: int, reference_model: str | None, note: str | None,
    comparisons: Comparisons | None = None,
) -> Section:
    section = Section("Table 1 analogue")
    if note:
        section.note(note)
    metric = analysis.primary_metric(df)
    table = analysis.table1(df, steps, sampler, reference_model, metric)
    writer.save_table("table1", table)
    if table.empty:
        section.note(f"No {sampler} cells at {steps} steps.")
        return section
    if len(table) > 1:
        section.reading(readings.table1_reading(table, analysis.model_labels(df), sampler, steps, metric,
                                                comparisons))
    section.table(f"Per model at {steps} {sampler} steps, best guidance by {metric_name(metric)}; normalized cost = "
                  "GFLOPs per NFE / the reference model's", table.drop(columns="cell"))
    checks = ranking_checks(table, comparisons)
    writer.save_table("ranking_checks", checks)
    if not checks.empty:
        section.reading(readings.ranking_reading(checks, ranking_disagreements(checks), kid_inside_floor(checks)))
        floor = _floor_note(comparisons, table["cell"].iloc[0])
        if floor:
            section.note(floor)
        section.table("FID ranking checks: FID and KID with their floors, N-extrapolated FID (FID-infinity, Chong and "
                      "Forsyth 2020: FID of subsets from N/4 to N, linear in 1/N, at 1/N = 0) and the rank by each",
                      checks.drop(columns="feature_space"))
    return section


def _guidance_section(df: pd.DataFrame, writer: Writer) -> Section:
    section = Section("Best guidance map")
    metric = analysis.primary_metric(df)
    writer.add_figure(section, figures.guidance_heatmap(df, writer.figure_dir, metric),
                      "no sampler swept more than one guidance scale.")
    for sampler in analysis.without_search(df)["sampler"].unique():
        table = analysis.guidance_map(df, sampler, metric)
        writer.save_table(f"guidance_map_{sampler}", table, index=True)
        text = readings.guidance_reading(df, table, sampler)
        if text is not None:
            section.reading(text)
    return section


def _paper_section(
    df: pd.DataFrame, writer: Writer, sampler: str, steps: int, reference_model: str | None
) -> Section:
    section = Section("Comparison with the paper")
    writer.add_figure(section, figures.paper_comparison(df, writer.figure_dir, steps, sampler, reference_model),
                      f"fewer than two models at {steps} {sampler} steps.")
    for metric in [m for m in PAPER_METRICS if m in set(df["metric"])]:
        comparison = analysis.paper_trend_comparison(df, steps, sampler, metric, reference_model)
        writer.save_table(f"paper_comparison_{metric}", comparison)
        text = readings.paper_reading(df, comparison, metric, sampler, steps)
        if text is not None:
            section.reading(text)
    return section


def _with_flops_written(table: pd.DataFrame) -> pd.DataFrame:
    """FLOP columns as 1.2e13 (empty where a model has none, e.g. an undistilled model's distillation)."""
    columns = [c for c in ("training_flops", "distillation_flops", "flops_not_included") if c in table]
    return table.assign(**{c: table[c].map(flops, na_action="ignore") for c in columns})


def _training_section(df: pd.DataFrame, writer: Writer, comparisons: Comparisons | None = None) -> Section:
    """Quality against training compute at fixed sampling budgets, and training + N-image sampling compute."""
    section = Section("Training compute")
    known = analysis.with_training_flops(df)
    if known["model"].nunique() < 2:
        section.note("Fewer than two models of this prompt set have known training FLOPs (toy models count theirs; "
                     "a real model's entry may state `training_flops`).")
        return section
    ledger = [c for c in ("training_flops", "distillation_flops", "training_flops_source", "training_steps",
                          "samples_seen", "training_seconds", "flops_not_included") if c in known and known[c].notna().any()]
    per_model = known.drop_duplicates("model").set_index("model").loc[analysis.model_order(known)]
    section.table("Training compute per model: FLOPs counted by torch's counter (one optimisation step's forward "
                  "and backward matmul, convolution and attention FLOPs, times the steps) or stated by the model's "
                  "authors; a distilled toy model's is its teacher's plus its distillation (`distillation_flops`, whose steps, "
                  "samples and seconds the other columns give); not included: the toy denoisers' one pass of the frozen "
                  "encoders over the data",
                  _with_flops_written(per_model[["params", *ledger]].reset_index()))
    tables = {metric: analysis.quality_vs_training(df, metric) for metric in analysis.training_metrics(known)}
    for metric, table in tables.items():
        writer.save_table(f"quality_vs_training_{metric}", table)
    writer.add_figure(section, figures.quality_vs_training_compute(df, writer.figure_dir),
                      "no sampling budget with two models within it.")
    section.readings(readings.training_readings(df, tables, comparisons))
    metric = analysis.training_metrics(known)[0]
    frontiers = analysis.training_plus_sampling_frontiers(df, metric)
    best = analysis.best_model_by_total(frontiers)
    writer.save_table(f"training_plus_sampling_{metric}", frontiers)
    writer.save_table(f"best_model_by_total_{metric}", best)
    writer.add_figure(section, figures.training_plus_sampling(df, writer.figure_dir, metric),
                      f"fewer than two models with {metric_name(metric)} and training FLOPs.")
    section.readings(readings.training_plus_sampling_readings(df, best, metric))
    return section


def _frontier_section(df: pd.DataFrame, writer: Writer) -> Section:
    section = Section("Joint frontier: model size, steps, guidance and search")
    primary = analysis.primary_metric(df)
    headline = analysis.headline_metrics(df) or [primary]
    plans = [(metric, "gflops_per_image") for metric in headline]
    if search_analysis.has_search(df):
        if search_analysis.fair_cost(df) == search_analysis.FAIR_COST:
            plans += [(metric, search_analysis.FAIR_COST) for metric in headline]
        else:
            section.note("The table has no verifier GFLOPs (total_gflops_per_image), so search is drawn at its "
                         "denoiser cost only, which undercounts it.")
    plans += [(primary, cost) for cost in FRONTIER_COSTS if cost != "gflops_per_image" and cost in df]
    for metric, cost in plans:
        frontier = analysis.joint_frontier(df, metric, cost)
        writer.save_table(f"frontier_{metric}_{cost}", frontier)
        figure = figures.joint_frontier_plot(df, writer.figure_dir, metric, cost)
        missing = f"fewer than two configurations with {metric_name(metric)} and {cost_unit(cost)}."
        writer.add_figure(section, figure, missing)
        if figure is not None:
            section.reading(readings.frontier_reading(df, frontier, metric, cost))
    return section


def _search_scaling_section(df: pd.DataFrame, writer: Writer) -> Section:
    section = Section("Search: scaling with compute")
    section.note(f"Search over initial noises with {search_readings.models_note(df)}. Each line is one algorithm and "
                 "verifier at fixed sampler, steps and guidance; it starts at the same configuration without search "
                 "(cross).")
    for cost in ("nfe_per_image", search_analysis.fair_cost(df)):
        writer.add_figure(section, search_figures.scaling_curves(df, writer.figure_dir, cost),
                          f"no search configuration with a headline metric and {cost_unit(cost)}.")
    writer.save_table("search_scaling", search_analysis.search_lines(df))
    section.readings(search_readings.scaling_readings(df))
    return section


def _search_verifier_section(df: pd.DataFrame, writer: Writer) -> Section:
    section = Section("Search: verifiers vs evaluation metrics")
    gains = search_analysis.verifier_gains(df)
    matrix = search_analysis.verifier_metric_matrix(gains)
    per_algorithm = search_analysis.verifier_metric_matrix(gains, by=["search"])
    hacking = search_analysis.verifier_hacking(matrix)
    writer.save_table("search_gains", gains)
    writer.save_table("search_verifier_matrix", matrix, index=True)
    writer.save_table("search_verifier_matrix_by_algorithm", per_algorithm, index=True)
    writer.save_table("search_verifier_hacking", hacking)
    writer.add_figure(section, search_figures.verifier_matrix_plot(df, writer.figure_dir),
                      "no search configuration has a no-search baseline.")
    section.readings(search_readings.verifier_readings(matrix, hacking))
    if not matrix.empty:
        shown = matrix.rename(columns=metric_name).map(lambda v: "" if pd.isna(v) else f"{v:+.1%}")
        section.table("Relative change over no search at the largest budget (positive = better), mean over models "
                      "and algorithms; rows: search verifier", shown, index=True)
    return section


def _search_equal_compute_section(df: pd.DataFrame, writer: Writer, comparisons: Comparisons | None = None) -> Section:
    section = Section("Search: small model + search vs bigger model at equal compute")
    comparison = search_analysis.equal_compute(df)
    # A win is the claim to test: where both cells have per-image data, its noise is read from the paired
    # difference, not from overlapping CIs (testing every loss too would cost minutes of FID bootstraps).
    comparison = with_differences(comparison, comparisons, None, "cell", "big_cell", comparison["outcome"] == "wins")
    paired = comparison["beyond_noise"].notna()
    comparison.loc[paired, "within_noise"] = ~comparison.loc[paired, "beyond_noise"].astype(bool)
    summary = search_analysis.equal_compute_summary(comparison)
    writer.save_table("search_equal_compute", comparison)
    writer.save_table("search_equal_compute_summary", summary)
    writer.add_figure(section, search_figures.equal_compute_plot(df, writer.figure_dir),
                      "no searched model has a bigger model with a no-search configuration within its budget.")
    section.readings(search_readings.equal_compute_readings(df, comparison))
    headline = summary[summary["metric"].isin(analysis.headline_metrics(df))]
    if not headline.empty:
        section.table("Small model + search vs the best no-search configuration of each bigger model within the same "
                      "cost: search configurations won, lost, tied and unaffordable per budget", headline)
    return section


def _search_budget_section(df: pd.DataFrame, writer: Writer) -> Section:
    verifier = search_analysis.BUDGET_VERIFIER
    section = Section(f"Search: FID and diversity vs budget ({verifier} verifier)")
    effect = search_analysis.budget_effect(df, verifier)
    trend = search_analysis.budget_trend(effect)
    writer.save_table(f"search_budget_{verifier}", effect)
    writer.save_table(f"search_budget_trend_{verifier}", trend)
    writer.add_figure(section, search_figures.budget_plot(df, writer.figure_dir, verifier),
                      f"no search with the {verifier} verifier scored by FID or recall.")
    section.readings(search_readings.budget_readings(trend, verifier))
    if not trend.empty:
        columns = ["model", "search", "sampler", "steps", "metric", "baseline", "best_budget", "best_value",
                   "largest_budget", "largest_value", "largest_ci_low", "largest_ci_high", "worse_at_largest"]
        section.table(f"Per search line with the {verifier} verifier: no search, the best budget and the largest",
                      trend[columns])
    return section
