"""The report's distilled-vs-undistilled views on fixture tables whose answers are known by construction.

Undistilled: "small" (0.1M, 0.1 GFLOPs per NFE) at DDIM 2, 10, 50 steps, FID 10 + 40 / steps; "big" (1M, 1 GFLOP
per NFE, the cost reference) at 2, 8, 50 steps, FID 3 + 40 / steps. Sampling cost = GFLOPs per NFE x steps.
Distilled (LCM, 1, 2, 4, 8 steps, FID floor + c / steps): "small-lcm" of "small" (floor 8, c 8: 16, 12, 10, 9) and
"big-lcm" of "big". With big-lcm at floor 3, c 30 (33, 18, 10.5, 6.75) both ladders rank small first within
budgets 2 to 5 and big first from 8: the ordering survives. With big-lcm at floor 12 (42, 27, 19.5, 15.75) the
distilled ladder keeps small first at 8, 10 and 50, where the undistilled one has big first: it flips there.

Frontiers (each ladder's best within the budget): undistilled 30, 14, 10.8, 8 (from 8), 3.8 (from 50); distilled
9 from 0.8 (small-lcm at 8 steps), and with the good big-lcm 6.75 from 8. So the undistilled best wins from 50 on
when the ordering survives, and from 8 on when it flips (8 < 9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from diffscale.report import analysis, build_report, figures, readings, style
from diffscale.report.comparisons import with_differences
from diffscale.report.tidy import COLUMNS

UNDISTILLED = {"small": (100_000, 0.1, 10.0, [2, 10, 50]), "big": (1_000_000, 1.0, 3.0, [2, 8, 50])}
GOOD_BIG_LCM, BAD_BIG_LCM = 3.0, 12.0


def rows(model, params, gflops, sampler, steps, fid, teacher="") -> list[dict]:
    base = {
        "cell": f"{model}__{sampler}__steps{steps}", "study": "fixture", "model": model, "params": params,
        "sampler": sampler, "steps": steps, "guidance": 1.0 if teacher else 3.0, "search": "none", "verifier": "none",
        "search_budget": 0, "prompt_set": "toy-captions", "nfe_per_image": float(steps if teacher else 2 * steps),
        "nfe_per_image_nocfg": float(steps), "gflops_per_nfe": gflops, "relative_cost": gflops * steps,
        "gflops_per_image": gflops * steps * (1 if teacher else 2), "distilled_from": teacher,
    }
    return [base | {"metric": "fid", "value": fid, "ci_low": fid - 0.1, "ci_high": fid + 0.1, "n": 64}]


def fixture_table(big_lcm_floor: float) -> pd.DataFrame:
    table = []
    for model, (params, gflops, floor, steps) in UNDISTILLED.items():
        table += [row for s in steps for row in rows(model, params, gflops, "ddim", s, floor + 40 / s)]
    for model, teacher, floor, c in [("small-lcm", "small", 8.0, 8.0), ("big-lcm", "big", big_lcm_floor, 30.0)]:
        params, gflops = UNDISTILLED[teacher][:2]
        table += [row for s in (1, 2, 4, 8) for row in rows(model, params, gflops, "lcm", s, floor + c / s, teacher)]
    return pd.DataFrame(table, columns=COLUMNS)


def test_the_ordering_survives_distillation_and_the_frontiers_cross_at_50():
    df = fixture_table(GOOD_BIG_LCM)
    ordering = analysis.ordering_per_budget(df, "fid")
    assert ordering["budget"].tolist() == [2, 4, 5, 8, 50]
    assert ordering["same_order"].all()
    assert ordering["undistilled_order"].tolist() == ["small > big"] * 3 + ["big > small"] * 2
    table = analysis.best_per_group(df, "distillation", "fid")
    assert table["winner"].tolist() == ["distilled"] * 8 + ["undistilled"]
    assert analysis.overtaken_at(table, "undistilled") == 50
    text = " ".join(readings.distillation_readings(df, table, ordering, "fid"))
    assert "ranks its models as the undistilled one does within 5 of 5 budgets" in text
    assert "So the ordering survives distillation." in text
    assert ("The frontiers cross at sampling cost 50: from there on the best undistilled configuration (big (1M), "
            "50 steps, FID 3.8) beats the best distilled one (big-lcm (1M, distilled), FID 6.75)") in text
    assert "the distilled best last wins within 8 (big-lcm (1M, distilled), 8 steps)" in text


def test_the_ordering_flips_after_distillation_and_the_frontiers_cross_at_8():
    df = fixture_table(BAD_BIG_LCM)
    ordering = analysis.ordering_per_budget(df, "fid").set_index("budget")
    assert ordering["same_order"].to_dict() == {2: True, 4: True, 5: True, 8: False, 50: False}
    assert ordering.loc[8, "distilled_order"] == "small > big" and ordering.loc[8, "spearman"] == -1
    table = analysis.best_per_group(df, "distillation", "fid")
    assert analysis.overtaken_at(table, "undistilled") == 8
    text = " ".join(readings.distillation_readings(df, table, ordering.reset_index(), "fid"))
    assert "within 3 of 5 budgets (2, 4, 5); it differs within 8 (undistilled big > small, distilled small > big)" in text
    assert "does not survive distillation everywhere" in text
    assert "The frontiers cross at sampling cost 8" in text


def test_no_crossing_when_the_distilled_best_wins_to_the_largest_budget():
    df = fixture_table(GOOD_BIG_LCM)
    df = df[~((df["model"] == "big") & (df["steps"] == 50))]
    table = analysis.best_per_group(df, "distillation", "fid")
    assert analysis.overtaken_at(table, "undistilled") is None
    assert "The frontiers do not cross in this table" in " ".join(
        readings.distillation_readings(df, table, analysis.ordering_per_budget(df, "fid"), "fid"))


def test_best_per_budget_marks_distilled_winners_and_labels_say_distilled():
    df = fixture_table(GOOD_BIG_LCM)
    best = analysis.best_model_per_budget(df, "fid").set_index("budget")
    assert best.loc[0.8, ["model", "distilled_from"]].tolist() == ["small-lcm", "small"]
    assert best.loc[50, ["model", "distilled_from"]].tolist() == ["big", ""]
    assert analysis.model_labels(df)["big-lcm"] == "big-lcm (1M, distilled)"
    assert analysis.best_per_group(df, "kind").empty  # all diffusion: no flow-vs-diffusion comparison


def test_figures_draw_distilled_models_dashed_in_their_teachers_colour(tmp_path):
    df = fixture_table(GOOD_BIG_LCM)
    palette = style.model_palette(df)
    assert palette["big-lcm"] == palette["big"] != palette["small"] == palette["small-lcm"]
    for draw in (figures.quality_vs_steps, figures.quality_vs_cost):
        path = draw(df, tmp_path)
        assert np.asarray(Image.open(path).convert("L"), dtype=float).std() > 0
    path = figures.ladder_frontiers(df, tmp_path, "distillation")
    assert path.name == "distilled_vs_undistilled_fid.png"


def test_report_page_has_the_distillation_section_and_metrics_carry_the_teacher(tmp_path):
    df = fixture_table(BAD_BIG_LCM)
    df.to_csv(tmp_path / "metrics.csv", index=False)
    page = build_report(tmp_path / "metrics.csv", tmp_path / "out", "distilled").read_text()
    assert "Distilled vs undistilled at equal cost" in page and "The frontiers cross at sampling cost 8" in page
    assert "(10x in parameters); 2 of them distilled (small-lcm from small, big-lcm from big); samplers" in page
    tables = tmp_path / "out" / "tables" / "toy-captions"
    best = pd.read_csv(tables / "best_per_budget_fid.csv", keep_default_na=False)
    assert set(best["distilled_from"]) == {"", "small"}
    assert (tables / "distilled_ordering_fid.csv").exists() and (tables / "distilled_vs_undistilled_fid.csv").exists()
    assert "figures/toy-captions/distilled_vs_undistilled_fid.png" in page


@pytest.mark.parametrize("column", [True, False])
def test_a_table_without_distilled_models_has_no_distillation_section(tmp_path, column):
    df = fixture_table(GOOD_BIG_LCM)
    df = df[df["distilled_from"] == ""]
    if not column:
        df = df.drop(columns="distilled_from")
    assert not analysis.has_split(df, "distillation") and analysis.teachers(df) == {}
    df.to_csv(tmp_path / "metrics.csv", index=False)
    assert "Distilled vs undistilled" not in build_report(tmp_path / "metrics.csv", tmp_path / "out", "plain").read_text()


class PairedStub:
    """Stands in for `Comparisons`: a paired difference for one pair of cells only (the crossing at 50)."""

    def difference(self, metric, a, b):
        if (a, b) == ("big-lcm__lcm__steps8", "big__ddim__steps50"):
            return {"difference": 2.95, "diff_ci_low": 2.5, "diff_ci_high": 3.4, "beyond_noise": True}
        return None


def test_the_crossing_reading_gives_the_paired_difference_where_per_image_data_exist():
    df = fixture_table(GOOD_BIG_LCM)
    table = with_differences(analysis.best_per_group(df, "distillation", "fid"), PairedStub(), "fid",
                             "cell_distilled", "cell_undistilled")
    assert table["beyond_noise"].tolist() == [None] * 8 + [True]
    text = " ".join(readings.distillation_readings(df, table, analysis.ordering_per_budget(df, "fid"), "fid"))
    assert ("Paired over prompts, the difference there (distilled minus undistilled) is 2.95 [2.5, 3.4], beyond "
            "noise.") in text
    assert "Paired over prompts" not in " ".join(
        readings.distillation_readings(df, analysis.best_per_group(df, "distillation", "fid"),
                                       analysis.ordering_per_budget(df, "fid"), "fid"))
