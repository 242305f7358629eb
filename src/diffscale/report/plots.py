"""The report's figures, drawn with seaborn. Each returns the PNG it wrote, or None with nothing to show."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from diffscale.report import frontier, mei2024  # noqa: E402

LABELS = {
    "fid": "FID (oracle features) ↓", "kid": "KID ↓", "clip_score": "CLIPScore (cosine) ↑",
    "compositional_accuracy": "compositional accuracy ↑", "oracle_confidence": "oracle confidence ↑",
}
QUALITY = ["fid", "clip_score", "compositional_accuracy"]


def human(params: float) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.0f}K"


def model_palette(df: pd.DataFrame) -> dict[str, tuple]:
    """Models ordered by size, coloured light (small) to dark (large)."""
    sizes = df.groupby("model")["params"].first().sort_values()
    colours = sns.color_palette("viridis_r", len(sizes))
    return {model: colours[i] for i, model in enumerate(sizes.index)}


def model_label(df: pd.DataFrame, model: str) -> str:
    return f"{model} ({human(df.loc[df['model'] == model, 'params'].iloc[0])})"


def _save(fig, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return out


def _lines_with_bands(ax, data: pd.DataFrame, x: str, palette: dict, df: pd.DataFrame) -> None:
    for model in palette:
        line = data[data["model"] == model].sort_values(x)
        if line.empty:
            continue
        ax.plot(line[x], line["value"], marker="o", ms=4, color=palette[model], label=model_label(df, model))
        ax.fill_between(line[x], line["ci_low"], line["ci_high"], color=palette[model], alpha=0.18, linewidth=0)


def quality_vs_steps(df: pd.DataFrame, out_dir: Path) -> Path | None:
    """Quality against sampling steps, one line per model size, at each point's FID-best guidance."""
    base = df[(df["search"] == "none") & (df["prompt_set"] == df.loc[df["metric"] == "fid", "prompt_set"].iloc[0])] if (df["metric"] == "fid").any() else df
    best = frontier.best_guidance(base, "fid") if (base["metric"] == "fid").any() else base
    metrics = [m for m in QUALITY if (best["metric"] == m).any()]
    samplers = sorted(best["sampler"].unique())
    if not metrics or best["steps"].nunique() < 2:
        return None
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(len(metrics), len(samplers), figsize=(4.2 * len(samplers), 3.1 * len(metrics)), squeeze=False, sharex=True)
    palette = model_palette(df)
    for j, sampler in enumerate(samplers):
        for i, metric in enumerate(metrics):
            ax = axes[i][j]
            _lines_with_bands(ax, best[(best["sampler"] == sampler) & (best["metric"] == metric)], "steps", palette, df)
            ax.set_xscale("log")
            ax.set_xlabel("sampling steps" if i == len(metrics) - 1 else "")
            ax.set_ylabel(LABELS.get(metric, metric) if j == 0 else "")
            if i == 0:
                ax.set_title(sampler)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="model (params)", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("Quality vs sampling steps (best guidance per point; bands: 95% bootstrap CI)", y=1.01)
    return _save(fig, out_dir / "quality_vs_steps.png")


def quality_vs_cost(df: pd.DataFrame, out_dir: Path, metric: str = "fid") -> Path | None:
    """The headline: best quality against Mei et al.'s sampling cost, one line per model size."""
    best = frontier.best_guidance(df[df["search"] == "none"], metric)
    points = best[best["metric"] == metric]
    if points.empty or points["relative_cost"].nunique() < 2:
        return None
    samplers = sorted(points["sampler"].unique())
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, len(samplers), figsize=(5.2 * len(samplers), 3.8), squeeze=False, sharey=True)
    palette = model_palette(df)
    for ax, sampler in zip(axes[0], samplers):
        _lines_with_bands(ax, points[points["sampler"] == sampler], "relative_cost", palette, df)
        ax.set_xscale("log")
        ax.set_xlabel("sampling cost (normalised GFLOPs x steps)")
        ax.set_title(sampler)
    axes[0][0].set_ylabel(LABELS.get(metric, metric))
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, title="model (params)", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle("Best quality vs sampling cost: which model size wins at each budget?", y=1.02)
    return _save(fig, out_dir / "quality_vs_cost.png")


def guidance_heatmap(df: pd.DataFrame, out_dir: Path) -> Path | None:
    samplers = [s for s in sorted(df["sampler"].unique()) if not frontier.guidance_map(df, s).empty]
    if not samplers or df["guidance"].nunique() < 2:
        return None
    sns.set_theme(style="white", context="notebook")
    fig, axes = plt.subplots(1, len(samplers), figsize=(4.4 * len(samplers), 3.4), squeeze=False)
    for ax, sampler in zip(axes[0], samplers):
        table = frontier.guidance_map(df, sampler)
        sns.heatmap(table, annot=True, fmt="g", cmap="mako_r", cbar=False, ax=ax, linewidths=0.5,
                    vmin=df["guidance"].min(), vmax=df["guidance"].max())
        ax.set_title(sampler)
        ax.set_xlabel("sampling steps")
        ax.set_ylabel("model" if ax is axes[0][0] else "")
    fig.suptitle("Guidance scale with the best FID, per model and steps", y=1.03)
    return _save(fig, out_dir / "best_guidance.png")


def paper_comparison(toy_table1: pd.DataFrame, out_dir: Path) -> Path | None:
    """Normalised cost vs FID at the reference steps: the toy ladder beside Mei et al.'s Table 1."""
    if toy_table1.empty or "fid" not in toy_table1 or len(toy_table1) < 2:
        return None
    paper = mei2024.table1()
    sns.set_theme(style="whitegrid", context="notebook")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, table, title, label in (
        (axes[0], toy_table1, "toy world (this study)", "model"),
        (axes[1], paper, "Mei et al. 2024, Table 1 (COCO FID-30K)", None),
    ):
        sns.lineplot(data=table, x="normalized_cost", y="fid", marker="o", ax=ax, color="#3b528b")
        names = table[label] if label else table["params"].map(human)
        for x, y, name in zip(table["normalized_cost"], table["fid"], names):
            ax.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("normalised cost per NFE (largest = 1)" if label else "normalised cost per NFE (866M = 1)")
        ax.set_ylabel("FID ↓")
        ax.set_title(title)
    fig.suptitle("Bigger models, lower FID at a fixed number of steps?", y=1.02)
    return _save(fig, out_dir / "paper_comparison.png")


def joint_frontier_plot(df: pd.DataFrame, out_dir: Path, metric: str = "fid") -> Path | None:
    points = df[df["metric"] == metric]
    front = frontier.joint_frontier(df, metric)
    if points.empty or len(front) < 1:
        return None
    sns.set_theme(style="whitegrid", context="notebook")
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    palette = model_palette(df)
    sns.scatterplot(data=points, x="gflops_per_image", y="value", hue="model", palette=palette, alpha=0.35, s=22, ax=ax,
                    hue_order=list(palette), legend=True)
    ax.step(front["gflops_per_image"], front["value"], where="post", color="black", linewidth=1.4, label="frontier")
    for _, row in front.iterrows():
        ax.annotate(f"{row['model']} {row['sampler']} {int(row['steps'])}st g{row['guidance']:g}",
                    (row["gflops_per_image"], row["value"]), textcoords="offset points", xytext=(3, 5), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("denoiser GFLOPs per image (CFG included)")
    ax.set_ylabel(LABELS.get(metric, metric))
    ax.legend(title="model", loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    ax.set_title("The joint frontier: best quality reachable at each compute budget")
    return _save(fig, out_dir / f"frontier_{metric}.png")
