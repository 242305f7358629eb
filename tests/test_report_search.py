"""The report's search analysis on a synthetic tidy table whose answers are known by construction.

Three models (0.1M, 0.3M, 1M parameters; GFLOPs per NFE 0.1, 0.3, 1) sampled without search at DDIM 2 to 20
steps and DDPM 10 steps, guidance 1.5 / 2 / 3, with FID = floor + 40 / steps + a guidance penalty. The
smallest and the largest model also search at 10 steps, guidance 2 (DDIM; DDPM for fk-steering): every
algorithm x verifier x budget {2, 4, 8}. A search cell's relative gain over its baseline (positive =
better) is GAIN[verifier][metric] x budget / 8 x ALGORITHM_SHARE[algorithm], except the oracle's FID, which
improves up to budget 4 and then worsens. NFEs per image are 2 x steps x budget, verifier GFLOPs
VERIFIER_GFLOPS[verifier] x budget.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffscale.report import build_report, readings
from diffscale.report.search_analysis import (
    budget_effect,
    budget_trend,
    equal_compute,
    equal_compute_summary,
    has_search,
    search_lines,
    verifier_gains,
    verifier_hacking,
    verifier_metric_matrix,
)
from diffscale.report.search_figures import budget_plot, equal_compute_plot, scaling_curves, verifier_matrix_plot
from diffscale.report.search_readings import (
    budget_readings,
    equal_compute_readings,
    scaling_readings,
    verifier_readings,
)
from diffscale.report.tidy import COLUMNS

PARAMS = {"toy-s": 100_000, "toy-m": 300_000, "toy-l": 1_000_000}
FLOOR = {"toy-s": 10.0, "toy-m": 6.5, "toy-l": 3.0}
BEST_GUIDANCE = {"toy-s": 2.0, "toy-m": 1.5, "toy-l": 3.0}
PLAIN = {"ddim": [2, 4, 5, 10, 20], "ddpm": [10]}
GUIDANCE = [1.5, 2.0, 3.0]
BASELINE_SCORES = {"recall": 0.6, "precision": 0.7, "clip_score": 0.3, "compositional_accuracy": 0.5,
                   "oracle_confidence": 0.5}
HALF_WIDTH = {"fid": 0.3, "recall": 0.02, "precision": 0.02, "clip_score": 0.005, "compositional_accuracy": 0.02,
              "oracle_confidence": 0.02}
VERIFIERS = {"random": ["oracle", "clip", "ensemble", "self-consistency"],
             "zero-order": ["oracle", "clip", "ensemble", "self-consistency"],
             "paths": ["oracle", "clip", "ensemble"], "fk-steering": ["oracle", "clip", "ensemble"]}
ALGORITHM_SHARE = {"random": 1.0, "zero-order": 0.5, "paths": 0.5, "fk-steering": 0.5}
VERIFIER_GFLOPS = {"oracle": 0.05, "clip": 0.2, "ensemble": 0.3, "self-consistency": 0.1}
GAIN = {  # relative gain at budget 8 for random search; FID of the oracle is special
    "oracle": {"fid": None, "recall": -0.2, "precision": 0.05, "clip_score": 0.01, "compositional_accuracy": 0.1,
               "oracle_confidence": 0.4},
    "clip": {"fid": 0.1, "recall": -0.05, "precision": 0.02, "clip_score": 0.3, "compositional_accuracy": 0.02,
             "oracle_confidence": 0.05},
    "ensemble": {"fid": 0.08, "recall": -0.02, "precision": 0.03, "clip_score": 0.1, "compositional_accuracy": 0.15,
                 "oracle_confidence": 0.15},
    "self-consistency": {"fid": 0.02, "recall": 0.0, "precision": 0.0, "clip_score": 0.01,
                         "compositional_accuracy": 0.03, "oracle_confidence": 0.02},
}
ORACLE_FID_GAIN = {2: 0.1, 4: 0.15, 8: 0.05}
BUDGETS = [2, 4, 8]
SEARCH_STEPS, SEARCH_GUIDANCE = 10, 2.0


def plain_fid(model: str, sampler: str, steps: int, guidance: float) -> float:
    return FLOOR[model] + 40 / steps + 2 * math.log2(guidance / BEST_GUIDANCE[model]) ** 2 + (sampler == "ddpm")


def rows_of(model, sampler, steps, guidance, scores, search_name="none", verifier="none", budget=0) -> list[dict]:
    gflops_per_nfe = PARAMS[model] / 1e6
    nfe = 2.0 * steps * max(budget, 1)
    verifier_gflops = VERIFIER_GFLOPS.get(verifier, 0.0) * budget
    base = {
        "cell": f"{model}__{sampler}__steps{steps}__cfg{guidance:g}__{search_name}-{verifier}{budget}",
        "study": "synthetic-search", "model": model, "params": PARAMS[model], "sampler": sampler, "steps": steps,
        "guidance": guidance, "search": search_name, "verifier": verifier, "search_budget": budget,
        "prompt_set": "toy-captions", "nfe_per_image": nfe, "nfe_per_image_nocfg": nfe / 2,
        "gflops_per_nfe": gflops_per_nfe, "gflops_per_image": gflops_per_nfe * nfe,
        "verifier_gflops_per_image": verifier_gflops, "total_gflops_per_image": gflops_per_nfe * nfe + verifier_gflops,
        "relative_cost": gflops_per_nfe * nfe / 2, "seconds_per_image": gflops_per_nfe * nfe * 0.01,
    }
    return [base | {"metric": m, "value": v, "ci_low": v - HALF_WIDTH[m], "ci_high": v + HALF_WIDTH[m], "n": 64}
            for m, v in scores.items()]


def search_gain(verifier: str, algorithm: str, metric: str, budget: int) -> float:
    if verifier == "oracle" and metric == "fid":
        return ORACLE_FID_GAIN[budget] * ALGORITHM_SHARE[algorithm]
    return GAIN[verifier][metric] * budget / 8 * ALGORITHM_SHARE[algorithm]


def baseline_scores(model: str, sampler: str, steps: int, guidance: float) -> dict[str, float]:
    return {"fid": plain_fid(model, sampler, steps, guidance), **BASELINE_SCORES}


def synthetic_search_metrics(searched=("toy-s", "toy-l")) -> pd.DataFrame:
    rows = []
    for model in PARAMS:
        for sampler, step_counts in PLAIN.items():
            for steps in step_counts:
                for guidance in GUIDANCE:
                    rows += rows_of(model, sampler, steps, guidance, baseline_scores(model, sampler, steps, guidance))
    for model in searched:
        for algorithm, verifier_names in VERIFIERS.items():
            sampler = "ddpm" if algorithm == "fk-steering" else "ddim"
            base = baseline_scores(model, sampler, SEARCH_STEPS, SEARCH_GUIDANCE)
            for verifier in verifier_names:
                for budget in BUDGETS:
                    scores = {}
                    for metric, value in base.items():
                        gain = search_gain(verifier, algorithm, metric, budget)
                        scores[metric] = value * (1 - gain) if metric == "fid" else value * (1 + gain)
                    rows += rows_of(model, sampler, SEARCH_STEPS, SEARCH_GUIDANCE, scores, algorithm, verifier, budget)
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture(scope="module")
def metrics() -> pd.DataFrame:
    return synthetic_search_metrics()


@pytest.fixture(scope="module")
def plain(metrics) -> pd.DataFrame:
    return metrics[metrics["search"] == "none"]


@pytest.fixture(scope="module")
def report(tmp_path_factory, metrics):
    root = tmp_path_factory.mktemp("search-report")
    metrics.to_csv(root / "metrics.csv", index=False, float_format="%.6g")
    return build_report(root / "metrics.csv", root / "out", "synthetic search study")


def test_search_lines_start_at_the_no_search_baseline(metrics):
    lines = search_lines(metrics, ["fid"])
    line = lines[(lines["model"] == "toy-s") & (lines["search"] == "random") & (lines["verifier"] == "oracle")]
    assert line["search_budget"].tolist() == [0, 2, 4, 8]
    assert line["nfe_per_image"].tolist() == [20, 40, 80, 160]
    assert line["value"].iloc[0] == pytest.approx(plain_fid("toy-s", "ddim", 10, 2.0))
    fk = lines[(lines["search"] == "fk-steering") & (lines["search_budget"] == 0)]
    assert set(fk["sampler"]) == {"ddpm"}
    assert fk["value"].iloc[0] == pytest.approx(plain_fid("toy-s", "ddpm", 10, 2.0))
    # 2 models x 14 (algorithm, verifier) lines x (baseline + 3 budgets)
    assert len(lines) == 2 * 14 * 4


def test_matrix_signs_gains_so_that_a_falling_fid_is_positive(metrics):
    gains = verifier_gains(metrics)
    assert (gains["search_budget"] == 8).all()
    random_clip = gains[(gains["search"] == "random") & (gains["verifier"] == "clip")].set_index(["model", "metric"])
    assert random_clip.loc[("toy-s", "fid"), "value"] < random_clip.loc[("toy-s", "fid"), "baseline"]
    assert random_clip.loc[("toy-s", "fid"), "relative_gain"] == pytest.approx(0.1)
    assert random_clip.loc[("toy-s", "recall"), "relative_gain"] == pytest.approx(-0.05)
    by_algorithm = verifier_metric_matrix(gains, by=["search"])
    assert by_algorithm.loc[("random", "clip"), "clip_score"] == pytest.approx(0.3)
    assert by_algorithm.loc[("random", "oracle"), "fid"] == pytest.approx(0.05)
    assert by_algorithm.loc[("zero-order", "clip"), "fid"] == pytest.approx(0.05)
    matrix = verifier_metric_matrix(gains)
    assert matrix.index.tolist() == ["oracle", "clip", "ensemble", "self-consistency"]
    assert matrix.columns.tolist() == ["fid", "precision", "recall", "clip_score", "compositional_accuracy",
                                       "oracle_confidence"]
    mean_share = {v: np.mean([ALGORITHM_SHARE[a] for a, vs in VERIFIERS.items() if v in vs]) for v in GAIN}
    assert matrix.loc["clip", "fid"] == pytest.approx(0.1 * mean_share["clip"])
    assert matrix.loc["self-consistency", "compositional_accuracy"] == pytest.approx(0.03 * 0.75)
    assert matrix.loc["oracle", "recall"] < 0


def test_verifier_hacking_flags_the_own_metric_diagonal(metrics):
    hacking = verifier_hacking(verifier_metric_matrix(verifier_gains(metrics)))
    hacking = hacking.set_index("verifier")
    assert hacking.index.tolist() == ["oracle", "clip"]
    assert hacking.loc["oracle", "own_metric"] == "oracle_confidence"
    assert hacking["hacked"].all() and hacking["own_is_column_best"].all()
    honest = pd.DataFrame({"oracle_confidence": [0.12], "compositional_accuracy": [0.1]}, index=["oracle"])
    assert not verifier_hacking(honest)["hacked"].iloc[0]
    harmful = pd.DataFrame({"oracle_confidence": [0.03], "compositional_accuracy": [-0.01]}, index=["oracle"])
    assert verifier_hacking(harmful)["hacked"].iloc[0]


def test_equal_compute_picks_the_best_bigger_configuration_within_the_total_cost(metrics):
    comparison = equal_compute(metrics, ["fid"])
    assert set(comparison["model"]) == {"toy-s"}  # the largest model has nobody bigger to beat
    assert (comparison["cost_unit"] == "total_gflops_per_image").all()
    rows = comparison[(comparison["search"] == "random") & (comparison["verifier"] == "oracle")
                      & (comparison["big_model"] == "toy-l")].set_index("search_budget")
    # budget 2: 4 denoiser + 0.1 verifier GFLOPs; toy-l affords only 2 steps (4 GFLOPs), best at guidance 3
    assert rows.loc[2, "cost"] == pytest.approx(4.1)
    assert (rows.loc[2, "big_steps"], rows.loc[2, "big_guidance"], rows.loc[2, "big_cost"]) == (2, 3.0, 4.0)
    assert rows.loc[2, "value"] == pytest.approx(14 * 0.9) and rows.loc[2, "big_value"] == pytest.approx(23)
    assert rows.loc[2, "outcome"] == "wins" and rows.loc[2, "advantage"] == pytest.approx(23 - 12.6)
    # budget 4: 8.2 GFLOPs buys toy-l's 4 steps (8) but not its 5 (10)
    assert (rows.loc[4, "big_sampler"], rows.loc[4, "big_steps"], rows.loc[4, "big_guidance"]) == ("ddim", 4, 3.0)
    assert rows.loc[4, "outcome"] == "wins"
    # budget 8: 16.4 GFLOPs buys toy-l's 5 steps at FID 11, better than toy-s's 13.3
    assert rows.loc[8, "big_steps"] == 5 and rows.loc[8, "big_value"] == pytest.approx(11)
    assert rows.loc[8, "outcome"] == "loses" and rows.loc[8, "advantage"] == pytest.approx(11 - 14 * 0.95)


def test_equal_compute_counts_the_verifier_cost(metrics):
    """toy-l's 4 steps made to cost 8.1 GFLOPs: within toy-s's random x4 total (8 + 0.2 verifier), not within
    its denoiser cost alone (8)."""
    shifted = metrics.copy()
    at = (shifted["model"] == "toy-l") & (shifted["steps"] == 4) & (shifted["search"] == "none")
    shifted.loc[at, ["gflops_per_image", "total_gflops_per_image"]] = 8.1
    total = equal_compute(shifted, ["fid"]).query(
        "search == 'random' and verifier == 'oracle' and big_model == 'toy-l' and search_budget == 4")
    denoiser = equal_compute(shifted, ["fid"], cost="gflops_per_image").query(
        "search == 'random' and verifier == 'oracle' and big_model == 'toy-l' and search_budget == 4")
    assert total["big_steps"].item() == 4
    assert denoiser["big_steps"].item() == 2


def test_equal_compute_marks_budgets_the_bigger_model_cannot_afford(metrics):
    cheap = metrics[~((metrics["model"] == "toy-l") & (metrics["steps"] < 5))]
    comparison = equal_compute(cheap, ["fid"])
    at_two = comparison[(comparison["big_model"] == "toy-l") & (comparison["search_budget"] == 2)]
    assert (at_two["outcome"] == "unaffordable").all() and at_two["big_value"].isna().all()
    summary = equal_compute_summary(comparison).set_index(["metric", "model", "big_model", "search_budget"])
    assert summary.loc[("fid", "toy-s", "toy-l", 2), "unaffordable"] == 14


def test_small_plus_search_agrees_with_ma_only_beyond_the_cis_and_against_every_larger_model_said(metrics):
    """toy-s + search against toy-l (the largest) and toy-m: the agreement is said against toy-l, with how toy-s
    fares against toy-m; with CIs so wide that every win overlaps, the same wins are a tie, not an agreement."""
    def fid_reading(table: pd.DataFrame) -> str:
        (sentence,) = [s for s in equal_compute_readings(table, equal_compute(table, ["fid"])) if s.startswith("FID")]
        return sentence

    agreed = fid_reading(metrics)
    assert re.search(r"This agrees with Ma et al\., who find .* at equal compute, against toy-l \(1M\); against the "
                     r"other larger models it wins toy-m \(0\.3M\) \d+ of \d+ \(\d+ beyond the CIs\)", agreed)
    wide = metrics.assign(ci_low=metrics["value"] - 100, ci_high=metrics["value"] + 100)
    tied = fid_reading(wide)
    assert "Every win is within the confidence intervals: a tie, which neither agrees nor disagrees" in tied
    assert "This agrees" not in tied


def test_search_best_is_the_best_value_not_the_largest_relative_gain(metrics):
    """toy-s's DDPM baseline made half as good: FK steering, which searches from it, gains the most relative to its
    baseline (+115%) but reaches less (0.5375) than random search by the ensemble from DDIM (0.575, +15%): the
    reading names the best value, with its own baseline."""
    weak = metrics.copy()
    at = ((weak["model"] == "toy-s") & (weak["sampler"] == "ddpm") & (weak["search"] == "none")
          & (weak["metric"] == "compositional_accuracy"))
    weak.loc[at, "value"] *= 0.5
    (sentence,) = [s for s in scaling_readings(weak) if s.startswith("Compositional accuracy:")]
    assert "for toy-s (0.1M) the best is 0.575, with random x8 by ensemble, against 0.5 for its sampler" in sentence
    assert "fk-steering" not in sentence.split(";")[0]


def test_the_algorithm_ranking_is_not_called_from_means(metrics):
    """Random search's mean gain is the largest here by construction; from means over verifiers, without a paired
    CI, the reading says so and does not claim agreement with Ma et al."""
    (ranking,) = [s for s in scaling_readings(metrics) if s.startswith("Mean gain")]
    assert "Random search's mean gain is above that of zero-order and paths here (means, without a paired CI: not a " \
           "call)" in ranking
    assert "agrees" not in ranking


def test_budget_effect_shows_fid_turning_and_recall_falling(metrics):
    effect = budget_effect(metrics)
    assert set(effect["verifier"]) == {"oracle"} and set(effect["metric"]) == {"fid", "recall"}
    line = effect[(effect["model"] == "toy-s") & (effect["search"] == "random")]
    fid = line[line["metric"] == "fid"]["value"].tolist()
    recall = line[line["metric"] == "recall"]["value"].tolist()
    assert fid == pytest.approx([14, 12.6, 11.9, 13.3])
    assert recall == pytest.approx([0.6, 0.6 * 0.95, 0.6 * 0.9, 0.6 * 0.8])
    trend = budget_trend(effect).set_index(["model", "search", "metric"])
    assert len(trend) == 2 * 4 * 2
    assert trend.loc[("toy-s", "random", "fid"), "best_budget"] == 4
    assert trend["worse_at_largest"].xs("fid", level="metric").all()
    assert not trend["worse_than_baseline"].xs("fid", level="metric").any()
    assert trend.xs("recall", level="metric")["spearman_budget"].tolist() == pytest.approx([-1.0] * 8)
    assert trend.xs("recall", level="metric")["worse_than_baseline"].all()
    assert trend.loc[("toy-s", "random", "fid"), "beyond_noise"]  # 13.3 +- 0.3 excludes 11.9
    readings = " ".join(budget_readings(budget_trend(effect)))
    assert "worse than at a smaller budget in 8 of 8 search lines" in readings
    assert "agrees with Ma et al." in readings and "below no search in 8 of 8 lines" in readings


DRAWINGS = [
    lambda df, out: scaling_curves(df, out, "nfe_per_image"),
    lambda df, out: scaling_curves(df, out, "total_gflops_per_image"),
    verifier_matrix_plot, equal_compute_plot, budget_plot,
]
NAMES = ["scaling_nfe", "scaling_total_gflops", "verifier_matrix", "equal_compute", "budget"]


@pytest.mark.parametrize("draw", DRAWINGS, ids=NAMES)
def test_search_figure_renders_a_non_blank_png(draw, metrics, tmp_path):
    path = draw(metrics, tmp_path)
    assert path.suffix == ".png" and path.parent == tmp_path
    pixels = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert pixels.std() > 0


@pytest.mark.parametrize("draw", DRAWINGS, ids=NAMES)
def test_search_figure_skips_a_table_without_search(draw, plain, tmp_path):
    assert draw(plain, tmp_path) is None
    assert not list(tmp_path.iterdir())


def test_search_figures_skip_missing_metrics(metrics, tmp_path):
    no_diversity = metrics[~metrics["metric"].isin(["fid", "recall"])]
    assert budget_plot(no_diversity, tmp_path) is None
    assert budget_trend(budget_effect(no_diversity)).empty
    no_independent = metrics[metrics["metric"] != "compositional_accuracy"]
    assert verifier_hacking(verifier_metric_matrix(verifier_gains(no_independent))).empty


def test_analysis_is_empty_without_search(plain):
    assert not has_search(plain)
    assert search_lines(plain).empty and verifier_gains(plain).empty
    assert verifier_metric_matrix(verifier_gains(plain)).empty
    assert equal_compute(plain).empty and budget_trend(budget_effect(plain)).empty
    assert verifier_readings(pd.DataFrame(), pd.DataFrame()) == []


def test_page_reports_the_search_findings(report):
    html = report.read_text()
    for title in ("Search: scaling with compute", "Search: verifiers vs evaluation metrics",
                  "Search: small model + search vs bigger model at equal compute",
                  "Search: FID and diversity vs budget (oracle verifier)"):
        assert title in html
    assert "Verifier hacking: searching with oracle raises oracle confidence (the same network)" in html
    assert "Ma et al." in html and "agrees with" in html
    assert ("so the small model + search beats it with some configuration at budgets 2, 4 and with none at budget 8"
            in html)
    pngs = sorted(report.parent.glob("figures/*/*.png"))
    for png in pngs:
        assert f'<img src="{png.relative_to(report.parent).as_posix()}"' in html
    names = {p.name for p in pngs}
    assert {"search_scaling_nfe_per_image.png", "search_scaling_total_gflops_per_image.png",
            "search_verifier_matrix.png", "search_equal_compute.png", "search_budget_oracle.png",
            "joint_frontier_fid_total_gflops_per_image.png"} <= names
    tables = {p.name for p in report.parent.glob("tables/toy-captions/*.csv")}
    assert {"search_scaling.csv", "search_verifier_matrix.csv", "search_verifier_matrix_by_algorithm.csv",
            "search_equal_compute.csv", "search_budget_oracle.csv", "frontier_fid_total_gflops_per_image.csv"} <= tables


def test_page_without_search_has_no_search_section(plain, tmp_path):
    plain.to_csv(tmp_path / "metrics.csv", index=False, float_format="%.6g")
    html = build_report(tmp_path / "metrics.csv", tmp_path / "out", "plain").read_text()
    assert "Search:" not in html
    assert "Joint frontier" in html and "total_gflops_per_image" not in html
    assert not list((tmp_path / "out" / "figures").glob("*/search_*.png"))


def test_search_report_is_deterministic(report, tmp_path):
    again = build_report(report.parent.parent / "metrics.csv", tmp_path / "out", "synthetic search study")
    first = {p.relative_to(report.parent): p.read_bytes() for p in sorted(report.parent.rglob("*")) if p.is_file()}
    second = {p.relative_to(again.parent): p.read_bytes() for p in sorted(again.parent.rglob("*")) if p.is_file()}
    assert first == second


def test_frontier_reading_claims_only_what_its_prompt_set_and_frontier_show():
    """A prompt set without search cells is not 'the study'; a frontier without search points that stops
    improving does not show that more steps or a bigger model 'buy more at every budget'."""
    def rows(search: str, values: list[float]) -> pd.DataFrame:
        return pd.DataFrame({"model": ["toy-w4", "toy-w8", "toy-w16"], "params": [1e4, 4e4, 2e5], "sampler": "ddim",
                             "steps": [2, 4, 8], "guidance": 2.0, "search": search, "search_budget": 0,
                             "verifier": "none", "value": values, "gflops_per_image": [0.1, 0.5, 2.0]})

    flat = rows("none", [0.30, 0.45, 0.45])
    text = readings.frontier_reading(flat, flat, "caption_probability", "gflops_per_image")
    assert "This prompt set has no search cells" in text and "The study has no search cells" not in text
    with_search_elsewhere = pd.concat([flat, rows("random", [0.1, 0.1, 0.1]).iloc[:1]])
    text = readings.frontier_reading(with_search_elsewhere, flat, "caption_probability", "gflops_per_image")
    assert "No search configuration is on it." in text and "buy more" not in text


def test_diversity_reading_does_not_agree_when_recall_rises():
    """Ma et al. explain oracle search's FID by a loss of diversity: recall rising in most lines, with no fall
    beyond the CI, must not read as (partial) agreement."""
    def trend(largest: list[float], beyond: list[bool]) -> pd.DataFrame:
        n = len(largest)
        return pd.DataFrame({"metric": "recall", "model": "toy-w8", "search": [f"s{i}" for i in range(n)],
                             "baseline": 0.5, "largest_value": largest, "beyond_noise": beyond})

    rising = budget_readings(trend([0.6] * 7 + [0.49], [False] * 8))
    assert "1 of 8 lines" in rising[0] and "agrees" not in rising[0] and "does not show" in rising[0]
    falling = budget_readings(trend([0.3] * 7 + [0.6], [True] * 7 + [False]))
    assert "This agrees with" in falling[0]


def test_verifier_readings_do_not_call_hacking_what_they_found_none_of():
    matrix = pd.DataFrame({"oracle_confidence": [0.5, 0.1], "clip_score": [0.01, 0.03],
                           "compositional_accuracy": [0.3, 0.02]}, index=pd.Index(["oracle", "clip"], name="verifier"))
    hacking = pd.DataFrame({"verifier": ["oracle", "clip"], "own_metric": ["oracle_confidence", "clip_score"],
                            "own_gain": [0.5, 0.03], "independent_metric": "compositional_accuracy",
                            "independent_gain": [0.3, 0.02], "hacked": False, "own_is_column_best": True})
    text = " ".join(verifier_readings(matrix, hacking))
    assert "No sign of hacking for oracle" in text and "No sign of hacking for clip" in text
    assert "verifier hacking" not in text and "here without hacking" in text
    hacked = hacking.assign(hacked=[False, True], independent_gain=[0.3, -0.02])
    text = " ".join(verifier_readings(matrix, hacked))
    assert "Verifier hacking: searching with clip" in text and "here without hacking" not in text
