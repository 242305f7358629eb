"""The report's analysis on a synthetic table whose answers are known by construction, and its figures."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffscale.report import build_report, frontier, plots
from diffscale.report.tidy import COLUMNS

MODELS = {"small": 1e5, "medium": 3e5, "large": 1e6}
STEPS = [2, 5, 10, 20, 50]
GUIDANCE = [1.5, 3.0, 6.0]


def synthetic_fid(model: str, steps: int, guidance: float) -> float:
    """Large models have the lower floor but need more steps; the best guidance falls with steps."""
    floor = {"small": 30.0, "medium": 15.0, "large": 5.0}[model]
    slowness = {"small": 0.5, "medium": 1.5, "large": 3.0}[model]
    best_guidance = 6.0 if steps <= 5 else 3.0 if steps <= 20 else 1.5
    return floor + 100.0 * slowness / steps + 5.0 * abs(np.log(guidance / best_guidance))


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    rows = []
    for (model, params), steps, guidance in itertools.product(MODELS.items(), STEPS, GUIDANCE):
        gflops = params / 1e5
        cell = f"{model}__ddim__steps{steps}__cfg{guidance:g}__nosearch__p"
        base = dict(cell=cell, study="t", model=model, params=int(params), sampler="ddim", steps=steps, guidance=guidance,
                    search="none", verifier="none", search_budget=0, prompt_set="p", nfe_per_image=2 * steps,
                    nfe_per_image_nocfg=steps, gflops_per_nfe=gflops, gflops_per_image=2 * steps * gflops,
                    relative_cost=gflops / 10 * steps, seconds_per_image=0.01, n=100)
        fid = synthetic_fid(model, steps, guidance)
        rows.append(base | dict(metric="fid", value=fid, ci_low=fid - 1, ci_high=fid + 1))
        clip = 0.5 - fid / 1000
        rows.append(base | dict(metric="clip_score", value=clip, ci_low=clip - 0.01, ci_high=clip + 0.01))
    return pd.DataFrame(rows, columns=COLUMNS)


def test_best_guidance_is_the_known_one(table):
    best = frontier.best_guidance(table, "fid")
    chosen = best[best["metric"] == "fid"].set_index(["model", "steps"])["best_guidance"]
    for model, steps in itertools.product(MODELS, STEPS):
        assert chosen[(model, steps)] == (6.0 if steps <= 5 else 3.0 if steps <= 20 else 1.5)
    assert set(best["metric"]) == {"fid", "clip_score"}, "every metric of the chosen cell is kept"


def test_best_model_per_budget_and_crossovers_are_the_known_ones(table):
    best = frontier.best_guidance(table, "fid")
    per_budget = frontier.best_model_per_budget(best, "fid")
    expected = {}
    points = best[best["metric"] == "fid"]
    for budget in sorted(points["relative_cost"].unique()):
        affordable = points[points["relative_cost"] <= budget]
        expected[budget] = affordable.loc[affordable["value"].idxmin(), "model"]
    assert dict(zip(per_budget["budget"], per_budget["best_model"])) == expected
    assert per_budget.iloc[0]["best_model"] == "small" and per_budget.iloc[-1]["best_model"] == "large"
    changes = frontier.crossovers(per_budget)
    assert list(changes["to_model"]) == [m for i, m in enumerate(per_budget["best_model"]) if i and m != per_budget["best_model"].iloc[i - 1]]
    assert (changes["from_model"] != changes["to_model"]).all()


def test_frontier_is_monotone_and_undominated(table):
    front = frontier.joint_frontier(table, "fid")
    assert front["gflops_per_image"].is_monotonic_increasing
    assert front["value"].is_monotonic_decreasing
    fid = table[table["metric"] == "fid"]
    for row in front.itertuples():
        cheaper = fid[fid["gflops_per_image"] <= row.gflops_per_image]
        assert row.value == cheaper["value"].min()


def test_table1_normalises_by_the_reference_model(table):
    t1 = frontier.table1(table, 50, "ddim")
    assert list(t1["model"]) == ["small", "medium", "large"]
    assert t1.loc[t1["model"] == "large", "normalized_cost"].item() == pytest.approx(1.0)
    assert t1.loc[t1["model"] == "small", "normalized_cost"].item() == pytest.approx(0.1)
    assert (t1["best_guidance"] == 1.5).all()


def test_guidance_map_is_models_by_steps(table):
    gmap = frontier.guidance_map(table, "ddim")
    assert list(gmap.index) == ["small", "medium", "large"] and list(gmap.columns) == STEPS


def test_rank_correlation_needs_no_scipy():
    assert frontier.rank_correlation(pd.Series([1, 2, 3]), pd.Series([30, 20, 10])) == pytest.approx(-1.0)


def _not_blank(path):
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    return pixels.std() > 5


def test_every_figure_renders_from_the_fixture(table, tmp_path):
    t1 = frontier.table1(table, 50, "ddim")
    for figure in (plots.quality_vs_steps(table, tmp_path), plots.quality_vs_cost(table, tmp_path),
                   plots.guidance_heatmap(table, tmp_path), plots.paper_comparison(t1, tmp_path),
                   plots.joint_frontier_plot(table, tmp_path)):
        assert figure is not None and _not_blank(figure)


def test_figures_skip_what_one_row_cannot_show(table, tmp_path):
    one = table.iloc[:1]
    assert plots.quality_vs_steps(one, tmp_path) is None
    assert plots.quality_vs_cost(one, tmp_path) is None
    assert plots.guidance_heatmap(one, tmp_path) is None


def test_report_page_has_every_figure_and_the_computed_reading(table, tmp_path):
    csv = tmp_path / "metrics.csv"
    table.to_csv(csv, index=False)
    page = build_report(csv, tmp_path / "report", "synthetic", reference_steps=50).read_text()
    for name in ("quality_vs_steps", "quality_vs_cost", "best_guidance", "paper_comparison", "frontier_fid"):
        assert f'src="figures/{name}.png"' in page
    assert "the best model is small" in page and "overtakes" in page
    again = build_report(csv, tmp_path / "report", "synthetic", reference_steps=50).read_text()
    assert again == page
