"""The report on a synthetic metrics table whose answers are known by construction.

Three models (0.1M, 0.3M, 1M parameters, GFLOPs per NFE proportional to size, the largest is the cost
reference) with FID = floor(model) + 40 / steps + a guidance penalty. Floors 10, 6.5 and 3 make the
smallest model win at low sampling cost, the middle one from cost 3 and the largest from cost 10.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffscale.report import analysis, build_report, figures, readings
from diffscale.report.metrics import higher_is_better, metric_name
from diffscale.report.text import size_label
from diffscale.report.tidy import COLUMNS
from paired_stub import PairedByValue

PARAMS = {"toy-a": 100_000, "toy-b": 300_000, "toy-c": 1_000_000}
FLOOR = {"toy-a": 10.0, "toy-b": 6.5, "toy-c": 3.0}
STEPS = {"ddim": [2, 5, 10, 20, 50], "ddpm": [10, 50]}
GUIDANCE = [1.5, 3.0, 6.0]
LABELS = {"toy-a": "toy-a (0.1M)", "toy-b": "toy-b (0.3M)", "toy-c": "toy-c (1M)"}


def known_best_guidance(model: str, steps: int) -> float:
    """Bigger models want more guidance, and the largest wants less at 50 steps (as in Mei et al.)."""
    if model == "toy-c" and steps == 50:
        return 3.0
    return {"toy-a": 1.5, "toy-b": 3.0, "toy-c": 6.0}[model]


def cell_rows(model, sampler, steps, guidance, scores, search="none", verifier="none", budget=0) -> list[dict]:
    gflops_per_nfe = PARAMS[model] / 1e6
    nfe_nocfg = steps * (1 + budget)
    base = {
        "cell": f"{model}__{sampler}__steps{steps}__cfg{guidance:g}__{search}{budget}__toy-captions",
        "study": "synthetic", "model": model, "params": PARAMS[model], "sampler": sampler, "steps": steps,
        "guidance": guidance, "search": search, "verifier": verifier, "search_budget": budget,
        "prompt_set": "toy-captions", "nfe_per_image": 2.0 * nfe_nocfg, "nfe_per_image_nocfg": float(nfe_nocfg),
        "gflops_per_nfe": gflops_per_nfe, "gflops_per_image": gflops_per_nfe * 2 * nfe_nocfg,
        "relative_cost": gflops_per_nfe * nfe_nocfg, "seconds_per_image": gflops_per_nfe * nfe_nocfg * 0.02,
    }
    half_width = {"fid": 0.5, "clip_score": 0.01, "compositional_accuracy": 0.02}
    return [
        base | {"metric": metric, "value": value, "ci_low": value - half_width[metric],
                "ci_high": value + half_width[metric], "n": 64}
        for metric, value in scores.items()
    ]


def synthetic_metrics() -> pd.DataFrame:
    rows = []
    for sampler, step_counts in STEPS.items():
        for rank, model in enumerate(PARAMS):
            for steps in step_counts:
                for guidance in GUIDANCE:
                    penalty = 2 * math.log2(guidance / known_best_guidance(model, steps)) ** 2
                    rows += cell_rows(model, sampler, steps, guidance, {
                        "fid": FLOOR[model] + 40 / steps + penalty + (sampler == "ddpm"),
                        # CLIPScore prefers the strongest guidance: it must be read at the FID-best one.
                        "clip_score": 0.25 + 0.01 * rank + 0.005 * guidance,
                        "compositional_accuracy": 0.3 + 0.1 * rank + 0.002 * steps,
                    })
    # Best-of-5 random search with the small model: 10 GFLOPs per image for FID 9, between two plain cells.
    rows += cell_rows("toy-a", "ddim", 10, 1.5, {"fid": 9.0, "clip_score": 0.27, "compositional_accuracy": 0.8},
                      search="random", verifier="oracle", budget=4)
    table = pd.DataFrame(rows, columns=COLUMNS)
    missing_ci = (table["model"] == "toy-a") & (table["steps"] == 2) & (table["metric"] == "clip_score")
    table.loc[missing_ci, ["ci_low", "ci_high"]] = math.nan
    return table


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return synthetic_metrics()


@pytest.fixture(scope="module")
def plain(metrics) -> pd.DataFrame:
    return analysis.without_search(metrics)


@pytest.fixture(scope="module")
def report(tmp_path_factory, metrics):
    root = tmp_path_factory.mktemp("report")
    metrics.to_csv(root / "metrics.csv", index=False, float_format="%.6g")
    return build_report(root / "metrics.csv", root / "out", "synthetic study", reference_steps=50)


def test_best_guidance_keeps_the_fid_best_scale_and_every_metric_of_that_cell(plain):
    best = analysis.best_guidance(plain, "fid")
    fid = best[best["metric"] == "fid"]
    assert len(fid) == 3 * (5 + 2)
    for row in fid.itertuples():
        assert row.best_guidance == row.guidance == known_best_guidance(row.model, row.steps)
    clip = best[best["metric"] == "clip_score"].set_index(["model", "sampler", "steps"])["guidance"]
    assert clip.equals(fid.set_index(["model", "sampler", "steps"])["guidance"].loc[clip.index])


def test_best_guidance_breaks_ties_towards_the_lower_scale(plain):
    tied = plain.copy()
    at = (tied["model"] == "toy-c") & (tied["sampler"] == "ddim") & (tied["steps"] == 2) & (tied["metric"] == "fid")
    tied.loc[at & (tied["guidance"] == 3.0), "value"] = tied.loc[at & (tied["guidance"] == 6.0), "value"].iloc[0]
    best = analysis.best_guidance(tied[at], "fid")
    assert best["best_guidance"].tolist() == [3.0]


def test_best_model_per_budget_gives_the_known_winners(plain):
    best = analysis.best_model_per_budget(plain, "fid")
    winners = dict(zip(best["budget"].round(6), best["model"]))
    expected = {0.2: "a", 0.5: "a", 0.6: "a", 1: "a", 1.5: "a", 2: "a", 3: "b", 5: "b", 6: "b", 10: "c", 15: "c",
                20: "c", 50: "c"}
    assert winners == {budget: f"toy-{model}" for budget, model in expected.items()}
    at_three = best[best["budget"].round(6) == 3].iloc[0]
    assert (at_three["steps"], at_three["guidance"], at_three["sampler"], at_three["value"]) == (10, 3.0, "ddim", 10.5)
    assert at_three["runner_up"] == "toy-a"


def test_best_model_per_budget_takes_given_budgets_and_skips_unaffordable_ones(plain):
    best = analysis.best_model_per_budget(plain, "fid", budgets=[0.1, 4.0])
    assert best["budget"].tolist() == [4.0]
    assert best["model"].tolist() == ["toy-b"]


def test_crossovers_are_where_the_winner_changes(plain):
    changes = analysis.crossovers(analysis.best_model_per_budget(plain, "fid"))
    assert changes["budget"].round(6).tolist() == [3.0, 10.0]
    assert changes["from_model"].tolist() == ["toy-a", "toy-b"]
    assert changes["to_model"].tolist() == ["toy-b", "toy-c"]


def test_the_paper_verdict_needs_a_rival_and_a_paired_win(plain):
    """At Mei et al.'s headline cost (3) the middle model wins here. "As in the paper" only when the paired CI
    calls it over the runner-up; a tie (or no paired data) agrees with nothing, nor does a lone affordable model."""
    best = analysis.best_model_per_budget(plain, "fid")
    changes = analysis.crossovers(best)

    def verdict(table: pd.DataFrame) -> str:
        return next(s for s in readings.cost_readings(plain, table, changes, "fid") if s.startswith("At sampling cost 3"))

    assert verdict(best.assign(beyond_noise=True)).endswith("toy-b (0.3M) with 10 steps: a smaller model than the "
                                                            "largest, as in the paper.")
    for untested in (best.assign(beyond_noise=False), best.assign(beyond_noise=None)):
        assert verdict(untested).endswith("ahead of toy-a (0.1M) without a paired difference beyond noise, a tie that "
                                          "neither agrees nor disagrees with the paper.")
    alone = best.assign(runner_up=None, beyond_noise=None)
    assert verdict(alone).endswith("the only model affordable there, which can neither agree nor disagree with the paper.")


@pytest.mark.parametrize("metric", ["fid", "compositional_accuracy"])
def test_joint_frontier_is_monotone_and_non_dominated(metrics, metric):
    frontier = analysis.joint_frontier(metrics, metric)
    points = metrics[metrics["metric"] == metric]
    sign = 1 if higher_is_better(metric) else -1
    assert frontier["gflops_per_image"].is_monotonic_increasing
    assert (np.diff(sign * frontier["value"]) > 0).all()
    for row in frontier.itertuples():
        cheaper = points[points["gflops_per_image"] <= row.gflops_per_image]
        assert (sign * cheaper["value"] <= sign * row.value).all()
    assert "random" in set(frontier["search"])


def test_guidance_trends_are_not_read_from_an_optimum_at_the_grids_edge(metrics):
    """Here the smallest model's best scale is the lowest tried (1.5) and the largest's mostly the highest (6):
    9 of DDIM's 15 points sit at an edge, so no trend with steps or size is read; with 3.0 best everywhere but one
    point, the trends are read and the edge count is said."""
    edgy = readings.guidance_reading(metrics, analysis.guidance_map(metrics, "ddim"), "ddim")
    assert "is best at 9 of 15 points: the optimum sits at the grid's edge" in edgy and "Spearman" not in edgy
    inside = analysis.guidance_map(metrics, "ddim").map(lambda g: 3.0)
    inside.iloc[0, 0] = 1.5
    reading = readings.guidance_reading(metrics, inside, "ddim")
    assert "is best at 1 of 15 points. It" in reading and "Spearman rho" in reading


def test_table1_reading_calls_the_best_model_against_the_runner_up(metrics):
    """At 50 DDIM steps toy-c (FID 3.8) leads toy-b (7.3): called with a paired CI of +-0.5, a tie with +-10."""
    table = analysis.table1(metrics, reference_steps=50)
    plain = analysis.without_search(metrics)

    def reading(comparisons) -> str:
        return readings.table1_reading(table, LABELS, "ddim", 50, "fid", comparisons)

    assert reading(PairedByValue(plain, 0.5)).endswith("The best FID comes from toy-c (1M), ahead of toy-b (0.3M) "
                                                       "beyond noise.")
    assert reading(PairedByValue(plain, 10.0)).endswith("comes from toy-c (1M), tied with toy-b (0.3M) (paired CI).")
    assert reading(None).endswith("toy-c (1M) (not called against toy-b (0.3M): no per-image data).")


def test_table1_normalises_cost_by_the_reference_model(metrics):
    table = analysis.table1(metrics, reference_steps=50)
    assert table["model"].tolist() == ["toy-a", "toy-b", "toy-c"]
    assert table["normalized_cost"].tolist() == pytest.approx([0.1, 0.3, 1.0])
    assert table["fid"].tolist() == pytest.approx([10.8, 7.3, 3.8])
    assert table["best_guidance"].tolist() == [1.5, 3.0, 3.0]
    assert {"clip_score", "compositional_accuracy"} <= set(table.columns)
    by_middle = analysis.table1(metrics, reference_steps=50, reference_model="toy-b")
    assert by_middle.set_index("model").loc["toy-b", "normalized_cost"] == pytest.approx(1.0)


def test_guidance_map_is_model_by_steps(metrics):
    table = analysis.guidance_map(metrics, "ddim")
    assert table.index.tolist() == ["toy-a", "toy-b", "toy-c"]
    assert table.columns.tolist() == [2, 5, 10, 20, 50]
    assert table.loc["toy-c"].tolist() == [6.0, 6.0, 6.0, 6.0, 3.0]


def test_paper_trend_comparison_agrees_when_bigger_is_better_at_reference_steps(metrics):
    comparison = analysis.paper_trend_comparison(metrics, reference_steps=50)
    assert (comparison["source"] == "paper").sum() == 11
    agreement = analysis.trend_agreement(comparison).set_index("source")
    assert agreement.loc["toy", "spearman_size"] == pytest.approx(-1.0)
    assert agreement.loc["paper", "spearman_size"] == pytest.approx(-1.0)
    assert agreement.loc["toy", "agrees_with_paper"]
    assert agreement.loc["toy", "best"] == "toy-c"


def test_comparisons_refuse_mixed_prompt_sets(metrics):
    mixed = pd.concat([metrics, metrics.assign(prompt_set="other")])
    with pytest.raises(ValueError, match="prompt set"):
        analysis.best_model_per_budget(mixed)


def test_unknown_metrics_count_as_scores():
    assert higher_is_better("aesthetic") and not higher_is_better("kid")
    assert metric_name("aesthetic_score") == "aesthetic score"


@pytest.mark.parametrize(("params", "label"), [(72_700, "72.7K"), (100_000, "0.1M"), (272_804, "0.27M"),
                                               (2_800_000, "2.8M"), (866e6, "866M"), (2e9, "2B")])
def test_size_label(params, label):
    assert size_label(params) == label


FIGURES = [figures.quality_vs_steps, figures.quality_vs_cost, figures.guidance_heatmap, figures.paper_comparison,
           figures.joint_frontier_plot]


@pytest.mark.parametrize("draw", FIGURES, ids=lambda f: f.__name__)
def test_figure_renders_a_non_blank_png(draw, metrics, tmp_path):
    path = draw(metrics, tmp_path)
    assert path.suffix == ".png" and path.parent == tmp_path
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert pixels.std() > 0


@pytest.mark.parametrize("draw", FIGURES, ids=lambda f: f.__name__)
def test_figure_skips_a_one_row_table(draw, metrics, tmp_path):
    assert draw(metrics.iloc[:1], tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_build_report_links_every_figure_and_names_the_crossovers(report):
    html = report.read_text()
    pngs = sorted(report.parent.glob("figures/*/*.png"))
    assert len(pngs) >= 5
    for png in pngs:
        assert f'<img src="{png.relative_to(report.parent).as_posix()}"' in html
    assert (f"The best model changes from {LABELS['toy-a']} to {LABELS['toy-b']} at sampling cost 3; "
            f"from {LABELS['toy-b']} to {LABELS['toy-c']} at sampling cost 10.") in html
    tables = {path.name for path in report.parent.glob("tables/toy-captions/*.csv")}
    assert {"best_per_budget_fid.csv", "crossovers_fid.csv", "table1.csv", "guidance_map_ddim.csv",
            "frontier_fid_gflops_per_image.csv"} <= tables


def test_build_report_is_deterministic(report, metrics, tmp_path):
    again = build_report(report.parent.parent / "metrics.csv", tmp_path / "out", "synthetic study", reference_steps=50)
    first = {p.relative_to(report.parent): p.read_bytes() for p in sorted(report.parent.rglob("*")) if p.is_file()}
    second = {p.relative_to(again.parent): p.read_bytes() for p in sorted(again.parent.rglob("*")) if p.is_file()}
    assert first == second


def test_flow_and_diffusion_ladders_are_compared_at_equal_cost(tmp_path):
    """Two kinds, two sizes each: flow is better at small budgets, diffusion at large ones, and each ladder
    switches from its small to its big model at budget 10 (costs: 0.1 or 1 GFLOPs per NFE x steps)."""
    rows = []
    for model, sampler, floor in [("toy-a", "ddim", 10), ("toy-c", "ddim", 3), ("toy-a", "flow-euler", 8),
                                  ("toy-c", "flow-euler", 4)]:
        for steps in (2, 10, 50):
            for row in cell_rows(model, sampler, steps, 3.0, {"fid": floor + 40 / steps}):
                rows.append(row | {"model": model + ("-flow" if sampler == "flow-euler" else "")})
    df = pd.DataFrame(rows, columns=COLUMNS)
    table = analysis.best_per_group(df, "kind", "fid")
    assert table["budget"].tolist() == [0.2, 1, 2, 5, 10, 50]
    assert table["winner"].tolist() == ["flow"] * 4 + ["diffusion"] * 2
    assert table["model_flow"].tolist() == ["toy-a-flow"] * 4 + ["toy-c-flow"] * 2
    ladders = analysis.crossovers_per_group(df, "kind", "fid")
    assert {kind: changes["budget"].tolist() for kind, changes in ladders.items()} == {"diffusion": [10], "flow": [10]}
    reading = " ".join(readings.group_readings(df, "kind", table, ladders, "fid"))
    assert "flow wins at 4 (0.2, 1, 2, 5); diffusion wins at 2 (10, 50)" in reading
    df.to_csv(tmp_path / "metrics.csv", index=False)
    page = build_report(tmp_path / "metrics.csv", tmp_path / "out", "kinds").read_text()
    assert "Flow matching vs diffusion at equal cost" in page and "flow wins at 4" in page
    assert (tmp_path / "out" / "tables" / "toy-captions" / "flow_vs_diffusion_fid.csv").exists()


def test_a_single_model_kind_has_no_kind_comparison(metrics):
    assert analysis.best_per_group(metrics, "kind", "fid").empty


def test_steps_reading_leaves_out_the_change_when_no_end_model_ran_both_step_counts():
    rows = cell_rows("toy-a", "ddpm", 5, 3.0, {"fid": 9.0}) + cell_rows("toy-b", "ddpm", 5, 3.0, {"fid": 8.0})
    rows += cell_rows("toy-b", "ddpm", 20, 3.0, {"fid": 7.0}) + cell_rows("toy-c", "ddpm", 20, 3.0, {"fid": 6.0})
    (reading,) = readings.steps_readings(pd.DataFrame(rows, columns=COLUMNS))
    assert reading == ("With ddpm, as steps go from 5 to 20, at 5 steps the best model is toy-b (0.3M) (not called "
                       "against toy-a (0.1M): no per-image data); at 20 steps the best model is toy-c (1M) (not called "
                       "against toy-b (0.3M): no per-image data).")


def test_steps_reading_calls_the_best_model_only_beyond_the_paired_ci():
    """FID 8 vs 9 at 5 steps, 6 vs 7 at 20: with a CI of +-0.5 both leads are called, with +-2 both are ties."""
    rows = cell_rows("toy-a", "ddpm", 5, 3.0, {"fid": 9.0}) + cell_rows("toy-b", "ddpm", 5, 3.0, {"fid": 8.0})
    rows += cell_rows("toy-b", "ddpm", 20, 3.0, {"fid": 7.0}) + cell_rows("toy-c", "ddpm", 20, 3.0, {"fid": 6.0})
    table = pd.DataFrame(rows, columns=COLUMNS)
    (called,) = readings.steps_readings(table, PairedByValue(table, 0.5))
    (tied,) = readings.steps_readings(table, PairedByValue(table, 2.0))
    assert called.endswith("at 5 steps the best model is toy-b (0.3M), ahead of toy-a (0.1M) beyond noise; at 20 "
                           "steps the best model is toy-c (1M), ahead of toy-b (0.3M) beyond noise.")
    assert "toy-b (0.3M), tied with toy-a (0.1M) (paired CI)" in tied and "beyond noise" not in tied
