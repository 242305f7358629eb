"""The figures of model size against sampling steps and of the joint frontier: one function per figure.

Each function takes one prompt set, writes one PNG into `out_dir` and returns its path, or returns None
when the table holds no comparison to draw (a single model, step count, guidance scale or point), so that
a small study renders a shorter report instead of failing. The shared look is `report.style`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter

from diffscale.report import style
from diffscale.report.analysis import (
    SPLITS,
    best_guidance,
    best_model_per_budget,
    best_per_group,
    default_reference_steps,
    default_sampler,
    guidance_map,
    headline_metrics,
    joint_frontier,
    model_distillation,
    model_labels,
    paper_trend_comparison,
    primary_metric,
    quality_vs_training,
    rank_correlation,
    require_one_prompt_set,
    teachers,
    training_metrics,
    training_plus_sampling_frontiers,
    with_training_flops,
    without_search,
)
from diffscale.report.metrics import metric_name
from diffscale.report.paper import PAPER, PAPER_METRICS, PAPER_SETTING
from diffscale.report.text import config_label, size_label


def _model_lines(ax, frame: pd.DataFrame, x: str, palette: dict) -> None:
    """One line per model with its confidence band (ci_low..ci_high; missing intervals leave gaps).

    A model measured at a single x gets an error bar instead, since a band of zero width is invisible.
    """
    if frame.empty:
        ax.text(0.5, 0.5, "not measured", transform=ax.transAxes, ha="center", va="center", color="0.5")
        return
    for model, line in frame.sort_values(x).groupby("model", sort=False):
        if len(line) == 1:
            spread = [line["value"] - line["ci_low"], line["ci_high"] - line["value"]]
            ax.errorbar(line[x], line["value"], yerr=spread, color=palette[model], capsize=3, linewidth=1)
        else:
            ax.fill_between(line[x], line["ci_low"], line["ci_high"], color=palette[model], alpha=0.2, linewidth=0)
    models = [m for m in palette if m in set(frame["model"])]
    sns.lineplot(
        data=frame.assign(ladder=model_distillation(frame)), x=x, y="value", hue="model", hue_order=models,
        palette=palette, style="ladder", dashes=style.DASHES, marker="o", estimator=None, errorbar=None,
        legend=False, ax=ax,
    )


@style.styled
def quality_vs_steps(df: pd.DataFrame, out_dir: Path, metrics: list[str] | None = None) -> Path | None:
    """Each metric against sampling steps, one line per model, a column per sampler (no search).

    Every point is read at the guidance scale that gives the best primary metric (FID), as in Mei et
    al.; samplers run at a single step count are left out.
    """
    require_one_prompt_set(df)
    selection_metric = primary_metric(df)
    points = best_guidance(without_search(df), selection_metric)
    metrics = metrics or headline_metrics(points) or [selection_metric]
    samplers = [s for s in points["sampler"].unique() if points.loc[points["sampler"] == s, "steps"].nunique() > 1]
    if not samplers:
        return None
    palette = style.model_palette(points)
    figure, axes = style.panels(len(metrics), len(samplers), sharex="col", sharey="row")
    for row, metric in enumerate(metrics):
        for column, sampler in enumerate(samplers):
            ax = axes[row][column]
            frame = points[(points["metric"] == metric) & (points["sampler"] == sampler)]
            _model_lines(ax, frame, "steps", palette)
            style.log_y_if_wide(ax, points, metric)
            style.log_x(ax, sorted(points.loc[points["sampler"] == sampler, "steps"].unique()))
            ax.set_title(f"sampler: {sampler}" if row == 0 else "")
            ax.set_xlabel("sampling steps (log scale)" if row == len(metrics) - 1 else "")
            ax.set_ylabel(style.metric_axis_label(metric) if column == 0 else "")
    figure.suptitle(f"Quality vs sampling steps (guidance chosen by best {metric_name(selection_metric)}; bands: CI)")
    style.model_legend(figure, points, palette)
    return style.save(figure, out_dir, "quality_vs_steps")


@style.styled
def quality_vs_cost(df: pd.DataFrame, out_dir: Path, metric: str | None = None) -> Path | None:
    """The headline: best quality against Mei et al.'s sampling cost, one line per model, per sampler.

    The dashed step line is the best model within each budget, so crossovers read off the figure.
    """
    require_one_prompt_set(df)
    metric = metric or primary_metric(df)
    points = best_guidance(without_search(df), metric)
    points = points[points["metric"] == metric]
    samplers = [s for s in points["sampler"].unique() if (points["sampler"] == s).sum() > 1]
    if not samplers:
        return None
    palette = style.model_palette(points)
    figure, axes = style.panels(1, len(samplers), sharey=True)
    for ax, sampler in zip(axes[0], samplers):
        frame = points[points["sampler"] == sampler]
        _model_lines(ax, frame, "relative_cost", palette)
        style.log_y_if_wide(ax, points, metric)
        envelope = best_model_per_budget(frame, metric)
        ax.plot(envelope["budget"], envelope["value"], drawstyle="steps-post", color="0.15", linestyle="--",
                linewidth=1)
        style.log_x(ax)
        ax.set(title=f"sampler: {sampler}", xlabel=style.COST_LABELS["relative_cost"],
               ylabel=style.metric_axis_label(metric))
    figure.suptitle(f"Best {metric_name(metric)} vs sampling cost (best guidance per point; bands: CI)")
    envelope_handle = Line2D([], [], color="0.15", linestyle="--", label="best within budget")
    style.model_legend(figure, points, palette, extra=(envelope_handle,))
    return style.save(figure, out_dir, "quality_vs_cost")


@style.styled
def crossover_frontier(df: pd.DataFrame, out_dir: Path, sampler: str, crossings: pd.DataFrame,
                       metric: str | None = None) -> Path | None:
    """Size vs budget at a glance (README's figure): one sampler's ladder against Mei et al.'s sampling cost, the
    best model within each budget (dashed), and each crossover (`crossings`: `analysis.crossovers` of that sampler
    with paired differences) marked where the new winner takes over: filled when the paired CI of new minus old
    winner excludes zero, hollow when it is a tie."""
    require_one_prompt_set(df)
    metric = metric or primary_metric(df)
    points = best_guidance(without_search(df), metric)
    points = points[(points["metric"] == metric) & (points["sampler"] == sampler)]
    if points["model"].nunique() < 2:
        return None
    palette = style.model_palette(points)
    figure, axes = style.panels(1, 1)
    ax = axes[0][0]
    _model_lines(ax, points, "relative_cost", palette)
    envelope = best_model_per_budget(points, metric)
    ax.plot(envelope["budget"], envelope["value"], drawstyle="steps-post", color="0.15", linestyle="--", linewidth=1)
    at_budget = envelope.set_index("budget")["value"]
    prefix = os.path.commonprefix(list(points["model"].unique()))  # "toy-w": labels name the rungs only
    for i, row in enumerate(crossings.itertuples()):
        value, colour = at_budget[row.budget], palette[row.to_model]
        ax.plot(row.budget, value, marker="*", markersize=16, markeredgecolor="0.1", zorder=5,
                color=colour if row.beyond_noise is True else "white")
        # Neighbouring crossovers alternate below and above their star, so close budgets stay legible.
        ax.annotate(f"{row.from_model.removeprefix(prefix)}\u2192{row.to_model.removeprefix(prefix)}", (row.budget, value),
                    textcoords="offset points", xytext=(7, -15 if i % 2 == 0 else 8), fontsize=8, color="0.2")
    style.log_x(ax)
    ax.set(xlabel=style.COST_LABELS["relative_cost"], ylabel=style.metric_axis_label(metric))
    called = sum(row.beyond_noise is True for row in crossings.itertuples())
    figure.suptitle(f"{sampler}: best {metric_name(metric)} vs sampling cost\n{called} of {len(crossings)} size crossovers "
                    "beyond noise (paired CI over prompts)")
    marks = (Line2D([], [], color="0.15", linestyle="--", label="best within budget"),
             Line2D([], [], color="0.5", marker="*", markersize=12, linestyle="", markeredgecolor="0.1",
                    label="crossover beyond noise"),
             Line2D([], [], color="white", marker="*", markersize=12, linestyle="", markeredgecolor="0.1",
                    label="crossover, a tie"))
    style.model_legend(figure, points, palette, extra=marks)
    return style.save(figure, out_dir, f"crossovers_{sampler}")


@style.styled
def guidance_heatmap(df: pd.DataFrame, out_dir: Path, metric: str | None = None) -> Path | None:
    """The best guidance scale per model and step count, one heatmap per sampler that swept guidance."""
    require_one_prompt_set(df)
    metric = metric or primary_metric(df)
    plain = without_search(df[df["metric"] == metric])
    samplers = [s for s in plain["sampler"].unique() if plain.loc[plain["sampler"] == s, "guidance"].nunique() > 1]
    if not samplers:
        return None
    labels = model_labels(plain)
    maps = {s: guidance_map(df, s, metric).rename(index=labels) for s in samplers}
    widths = [max(table.shape[1], 2) for table in maps.values()]
    figure = Figure(figsize=(2.2 + 0.8 * sum(widths), 1.2 + 0.45 * len(labels)), layout="constrained")
    axes = figure.subplots(1, len(samplers), squeeze=False, sharey=True, width_ratios=widths)[0]
    for index, (ax, (sampler, table)) in enumerate(zip(axes, maps.items())):
        last = index == len(samplers) - 1
        sns.heatmap(
            table, annot=True, fmt="g", cmap="crest", vmin=plain["guidance"].min(), vmax=plain["guidance"].max(),
            linewidths=0.5, cbar=last, cbar_kws={"label": "best guidance scale"}, ax=ax,
        )
        ax.set(title=f"sampler: {sampler}", xlabel="sampling steps", ylabel="model (params)" if index == 0 else "")
        ax.tick_params(axis="y", rotation=0)
    figure.suptitle(f"Guidance scale with the best {metric_name(metric)}")
    return style.save(figure, out_dir, "guidance_heatmap")


@style.styled
def paper_comparison(
    df: pd.DataFrame,
    out_dir: Path,
    reference_steps: int | None = None,
    sampler: str | None = None,
    reference_model: str | None = None,
) -> Path | None:
    """Toy normalised cost vs FID (and CLIPScore) beside Mei et al.'s Table 1, one row per metric.

    The ladders differ by orders of magnitude, so each panel has its own axes: the reader compares the
    trend with size (and its Spearman rho), not the values.
    """
    require_one_prompt_set(df)
    sampler = sampler or default_sampler(df)
    steps = reference_steps or default_reference_steps(df, sampler)
    comparisons = []
    for metric in PAPER_METRICS:
        if metric in set(df["metric"]):
            comparison = paper_trend_comparison(df, steps, sampler, metric, reference_model)
            if comparison.loc[comparison["source"] == "toy", "value"].notna().sum() > 1:
                comparisons.append((metric, comparison))
    if not comparisons:
        return None
    titles = {
        "toy": f"toy ladder (this study)\n{sampler}, {steps} steps, best guidance",
        "paper": f"{PAPER}, Table 1\n{PAPER_SETTING}",
    }
    # The paper's eleven sizes get the wider panel so that their labels stay apart.
    figure, axes = style.panels(len(comparisons), 2, legend=False, width_ratios=[1, 1.5])
    for row, (metric, comparison) in enumerate(comparisons):
        for ax, source in zip(axes[row], ("toy", "paper")):
            ladder = comparison[(comparison["source"] == source)].dropna(subset=["value"]).sort_values("params")
            ax.plot(ladder["normalized_cost"], ladder["value"], color="0.7", linewidth=1, zorder=1)
            colors = style.size_colours(len(ladder))
            ax.scatter(ladder["normalized_cost"], ladder["value"], c=colors, s=36, zorder=2)
            for index, (_, point) in enumerate(ladder.iterrows()):
                ax.annotate(  # alternate above and below, so that neighbours on a plateau stay legible
                    size_label(point["params"]), (point["normalized_cost"], point["value"]),
                    xytext=(4, 4 if index % 2 == 0 else -10), textcoords="offset points", fontsize=7,
                )
            rho = rank_correlation(ladder["params"], ladder["value"])
            rising = rho > 0  # a rising curve leaves the top left empty, a falling one the top right
            ax.text(
                0.03 if rising else 0.97, 0.95, f"Spearman rho(size, {metric_name(metric)}) = {rho:.2f}",
                transform=ax.transAxes, ha="left" if rising else "right", va="top", fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "0.8", "boxstyle": "round"},
            )
            style.log_x(ax)
            ax.set_title(titles[source] if row == 0 else "")
            ax.set(xlabel="normalized cost (GFLOPs per NFE / reference model)", ylabel=style.metric_axis_label(metric))
    figure.suptitle(f"Does a bigger model give better images at a fixed step count? Toy ladder vs {PAPER}")
    return style.save(figure, out_dir, "paper_comparison")


@style.styled
def joint_frontier_plot(
    df: pd.DataFrame, out_dir: Path, metric: str | None = None, cost: str = "gflops_per_image"
) -> Path | None:
    """Every configuration as a faint point and the cost-quality frontier as a step line.

    Frontier points are numbered; the list beside the plot says which configuration each one is.
    """
    require_one_prompt_set(df)
    metric = metric or primary_metric(df)
    points = df[(df["metric"] == metric) & df["value"].notna() & df[cost].notna()]
    if len(points) < 2:
        return None
    frontier = joint_frontier(df, metric, cost)
    labels = model_labels(points)
    palette = style.model_palette(points)
    lines = [f"{n}. {config_label(point)}: {point['value']:.3g}" for n, (_, point) in enumerate(frontier.iterrows(), 1)]
    listing_width = 0.3 + 0.045 * max(len(line) for line in lines)  # inches of 7.5 pt text
    figure = Figure(figsize=(7 + listing_width, 5), layout="constrained")
    ax, listing = figure.subplots(1, 2, width_ratios=[7, listing_width])
    sns.scatterplot(
        data=points.assign(model=points["model"].map(labels)), x=cost, y="value",
        hue="model", hue_order=list(labels.values()), palette=list(palette.values()),
        style="search", alpha=0.6, s=36, ax=ax, legend="brief",
    )
    # The frontier holds beyond its last point: extend it to the most expensive configuration.
    ax.step([*frontier[cost], points[cost].max()], [*frontier["value"], frontier["value"].iloc[-1]],
            where="post", color="0.1", linewidth=1.5)
    ax.scatter(frontier[cost], frontier["value"], facecolors="none", edgecolors="0.1", s=80)
    for number, (_, point) in enumerate(frontier.iterrows(), start=1):
        ax.annotate(str(number), (point[cost], point["value"]), xytext=(5, 4), textcoords="offset points",
                    fontsize=8, weight="bold")
    style.log_x(ax)
    style.log_y_if_wide(ax, points, metric)
    ax.set(xlabel=style.COST_LABELS.get(cost, cost), ylabel=style.metric_axis_label(metric),
           title=f"Every configuration and the frontier: {metric_name(metric)} vs cost per image")
    handles, names = ax.get_legend_handles_labels()
    ax.get_legend().remove()
    if points["search"].nunique() == 1:  # a single marker style says nothing: keep the models only
        keep = names.index("search") if "search" in names else len(names)
        handles, names = handles[:keep], names[:keep]
    names = ["model (params):" if n == "model" else "search:" if n == "search" else n for n in names]
    figure.legend(handles, names, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    listing.axis("off")
    listing.text(0, 1, "Frontier, cheapest first:\n" + "\n".join(lines), va="top", fontsize=7.5,
                 transform=listing.transAxes)
    return style.save(figure, out_dir, f"joint_frontier_{metric}_{cost}")


@style.styled
def quality_vs_training_compute(df: pd.DataFrame, out_dir: Path, budgets: list[float] | None = None) -> Path | None:
    """Mei et al.'s training-compute view: each model's best quality within a fixed sampling budget against the
    FLOPs its training spent, one line per budget, a panel per metric (FID, compositional accuracy)."""
    require_one_prompt_set(df)
    known = with_training_flops(df)
    if known["model"].nunique() < 2:
        return None
    metrics = training_metrics(known)
    tables = {metric: quality_vs_training(known, metric, budgets) for metric in metrics}
    if all(table.empty for table in tables.values()):
        return None
    figure, axes = style.panels(1, len(metrics))
    sizes = known.drop_duplicates("model").set_index("model")
    distilled = set(teachers(known))
    budgets = sorted({b for table in tables.values() for b in table["budget"]})
    colours = dict(zip(budgets, sns.color_palette("crest", len(budgets))))
    for ax, (metric, table) in zip(axes[0], tables.items()):
        # A student is not a rung of its teacher's ladder: each ladder is its own line per budget (students dashed).
        ladders = table.assign(ladder=table["model"].isin(distilled))
        for (value, is_distilled), line in ladders.groupby(["budget", "ladder"]):
            ax.plot(line["training_flops"], line["value"], color=colours[value], marker="o",
                    linestyle="--" if is_distilled else "-")
        style.log_y_if_wide(ax, table, metric)
        ax.set_xscale("log")
        ax.set_xticks(sizes["training_flops"], [f"{size_label(p)}\n{f:.2g}" for p, f in
                                                zip(sizes["params"], sizes["training_flops"])], fontsize=7)
        ax.minorticks_off()
        ax.set(xlabel="training FLOPs (model size above)", ylabel=style.metric_axis_label(metric))
    handles = [Line2D([], [], color=colours[b], marker="o", label=f"{b:.3g}") for b in budgets]
    if distilled:
        handles += [Line2D([], [], color="0.2", label="undistilled"),
                    Line2D([], [], color="0.2", linestyle="--", label="distilled")]
    figure.legend(handles=handles, title="sampling budget\n(sampling cost)", loc="outside right center", frameon=False)
    figure.suptitle("Best quality within a fixed sampling budget vs training compute (no search, best guidance)")
    return style.save(figure, out_dir, "quality_vs_training_compute")


@style.styled
def training_plus_sampling(df: pd.DataFrame, out_dir: Path, metric: str | None = None,
                           images: list[int] | None = None) -> Path | None:
    """The joint view: quality against training + N-image sampling FLOPs, a panel per N; every plain configuration
    as a point, the frontier as a step line (its model is the best one for that total budget)."""
    require_one_prompt_set(df)
    known = with_training_flops(without_search(df))
    metric = metric or training_metrics(known if not known.empty else df)[0]
    points = known[(known["metric"] == metric) & known["value"].notna()]
    if points["model"].nunique() < 2:
        return None
    frontiers = training_plus_sampling_frontiers(known, metric, images)
    palette = style.model_palette(points)
    counts = sorted(frontiers["images"].unique())
    figure, axes = style.panels(1, len(counts), sharey=True)
    for ax, count in zip(axes[0], counts):
        total = points.assign(total_flops=points["training_flops"] + count * points["gflops_per_image"] * 1e9)
        sns.scatterplot(data=total, x="total_flops", y="value", hue="model", hue_order=list(palette),
                        palette=palette, alpha=0.6, s=30, legend=False, ax=ax)
        frontier = frontiers[frontiers["images"] == count]
        ax.step([*frontier["total_flops"], total["total_flops"].max()], [*frontier["value"], frontier["value"].iloc[-1]],
                where="post", color="0.1", linewidth=1.2)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a short log range overlap
        style.log_y_if_wide(ax, points, metric)
        ax.set(title=f"N = {count:,} images", xlabel="training + N-image sampling FLOPs",
               ylabel=style.metric_axis_label(metric))
    figure.suptitle(f"Which model is best for a total of training and sampling compute? ({metric_name(metric)}, "
                    "no search, CFG counted)")
    frontier_handle = Line2D([], [], color="0.1", label="best within the total")
    style.model_legend(figure, points, palette, extra=(frontier_handle,))
    return style.save(figure, out_dir, f"training_plus_sampling_{metric}")


@style.styled
def ladder_frontiers(df: pd.DataFrame, out_dir: Path, split: str, metric: str | None = None) -> Path | None:
    """Two ladders of `analysis.SPLITS` at equal cost: each model's best configuration within each budget (any
    sampler, best guidance, no search) as a thin line, each ladder's best within the budget as a thick step line
    (solid: the first ladder, dashed: the second), so where the frontiers cross reads off the figure."""
    require_one_prompt_set(df)
    metric = metric or primary_metric(df)
    table = best_per_group(df, split, metric)
    if len(table) < 2:
        return None
    first, second = SPLITS[split][1]
    points = best_guidance(without_search(df), metric)
    points = points[(points["metric"] == metric) & points["relative_cost"].notna()]
    palette = style.model_palette(points)
    per_model = pd.concat([best_model_per_budget(line, metric, budgets=table["budget"].tolist())
                           for _, line in points.groupby("model", sort=False)], ignore_index=True)
    figure, axes = style.panels(1, 1)
    ax = axes[0][0]
    dashes = {first: "-", second: "--"}
    ladder_of = dict(zip(points["model"], SPLITS[split][0](points)))
    # The ladders' best as wide translucent bands underneath, so the winning model's own line shows on top.
    best = {"color": "0.1", "linewidth": 5, "alpha": 0.3, "solid_capstyle": "butt", "zorder": 1}
    bands = {first: "-", second: (0, (1.2, 0.8))}  # dashes scale with the width: short ones read as dashed
    for ladder in (first, second):
        ax.plot(table["budget"], table[f"value_{ladder}"], drawstyle="steps-post", linestyle=bands[ladder], **best)
    for model, line in per_model.groupby("model", sort=False):
        ax.plot(line["budget"], line["value"], drawstyle="steps-post", color=palette[model], linewidth=1.3,
                linestyle=dashes[ladder_of[model]], zorder=2)
    style.log_x(ax)
    style.log_y_if_wide(ax, points, metric)
    ax.set(xlabel=style.COST_LABELS["relative_cost"], ylabel=style.metric_axis_label(metric),
           title=f"{second} vs {first}: best within each budget")
    handles = tuple(Line2D([], [], linestyle=bands[ladder], label=f"best {ladder}", **best) for ladder in (first, second))
    style.model_legend(figure, points, palette, extra=handles)
    return style.save(figure, out_dir, f"{second}_vs_{first}_{metric}")
