"""The report's training-compute views on a small fixture table whose answers are known by construction.

Two models, one sampler (10 and 50 steps), one guidance scale. The small one (0.1M parameters, trained with
1e12 FLOPs, 0.5 GFLOPs per NFE) has FID 20 and 15; the big one (1M, 1e13 FLOPs, 5 GFLOPs per NFE, the cost
reference) has FID 18 at 10 steps and 5 at 50. Within sampling cost 10 the small model wins (15 at cost 5 vs 18);
within 50 the big one. A guided image costs 2 NFEs per step: 10 and 50 GFLOPs for the small model, 100 and 500
for the big one; so with 1,000 images the small model is best from 1e12 + 1e13 FLOPs and the big one only from
1e13 + 5e14 (its 10-step configuration, at 1.1e14, is worse than the small model's 50 steps).
"""

from __future__ import annotations

import pandas as pd
import pytest
from PIL import Image

from diffscale.report import analysis, build_report, figures, readings
from diffscale.report.tidy import COLUMNS
from paired_stub import PairedByValue

MODELS = {  # params, training FLOPs, GFLOPs per NFE, {steps: (FID, compositional accuracy)}
    "small": (100_000, 1e12, 0.5, {10: (20.0, 0.5), 50: (15.0, 0.6)}),
    "big": (1_000_000, 1e13, 5.0, {10: (18.0, 0.7), 50: (5.0, 0.9)}),
}


def fixture_table(training: dict[str, float] | None = None) -> pd.DataFrame:
    rows = []
    for model, (params, trained, gflops, scores) in MODELS.items():
        for steps, (fid, accuracy) in scores.items():
            base = {
                "cell": f"{model}__ddim__steps{steps}", "study": "fixture", "model": model, "params": params,
                "sampler": "ddim", "steps": steps, "guidance": 3.0, "search": "none", "verifier": "none",
                "search_budget": 0, "prompt_set": "toy-captions", "nfe_per_image": 2.0 * steps,
                "nfe_per_image_nocfg": float(steps), "gflops_per_nfe": gflops, "gflops_per_image": gflops * 2 * steps,
                "verifier_gflops_per_image": 0.0, "total_gflops_per_image": gflops * 2 * steps,
                "relative_cost": gflops / 5.0 * steps,
                "training_flops": (training or {}).get(model, trained),
            }
            for metric, value in (("fid", fid), ("compositional_accuracy", accuracy)):
                rows.append(base | {"metric": metric, "value": value, "ci_low": value - 0.1, "ci_high": value + 0.1,
                                    "n": 64})
    return pd.DataFrame(rows, columns=COLUMNS)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return fixture_table()


def test_quality_vs_training_takes_each_models_best_within_each_budget(table):
    fid = analysis.quality_vs_training(table, "fid", budgets=[10, 50])
    at = {(row.budget, row.model): (row.steps, row.value, row.training_flops) for row in fid.itertuples()}
    assert at == {(10, "small"): (50, 15.0, 1e12), (10, "big"): (10, 18.0, 1e13),
                  (50, "small"): (50, 15.0, 1e12), (50, "big"): (50, 5.0, 1e13)}
    assert analysis.default_sampling_budgets(table) == [10.0, 50.0], "the largest model's own costs"
    unaffordable = analysis.quality_vs_training(table, "fid", budgets=[5])
    assert unaffordable["model"].tolist() == ["small"]


def test_training_reading_names_the_best_model_per_budget_and_calls_the_order_paired(table):
    tables = {m: analysis.quality_vs_training(table, m, budgets=[10, 50]) for m in ("fid", "compositional_accuracy")}
    fid, accuracy = readings.training_readings(table, tables, PairedByValue(table, 0.05))
    assert "within 10, small (0.1M) (15; trained with 1e12 FLOPs); within 50, big (1M) (5; trained with 1e13" in fid
    assert "big (1M), is ahead beyond noise within 50; behind beyond noise within 10" in fid
    assert "big (1M), is ahead beyond noise within 10, 50" in accuracy, "bigger wins compositional accuracy at both"


def test_training_reading_calls_nothing_without_a_paired_ci_and_says_tie_within_it(table):
    """One budget, a 0.1 lead: with a CI of +-0.5 it is a tie, without per-image data it is not tested; neither
    reading says the most-trained model is best "at every budget"."""
    close = table.assign(value=table["value"].where(~((table["model"] == "small") & (table["steps"] == 50)), 0.8))
    accuracy = {"compositional_accuracy": analysis.quality_vs_training(close, "compositional_accuracy", budgets=[50])}
    (tied,) = readings.training_readings(close, accuracy, PairedByValue(close, 0.5))
    (untested,) = readings.training_readings(close, accuracy)
    assert "big (1M), is tied within 50." in tied
    assert "the order of the models within a budget is not tested here" in untested
    assert not any("best at every budget" in sentence or "is best within" in sentence for sentence in (tied, untested))


def test_joint_view_picks_the_best_model_for_each_total_and_image_count(table):
    frontiers = analysis.training_plus_sampling_frontiers(table, "fid", images=[1, 1000])
    best = analysis.best_model_by_total(frontiers)
    assert [(row.images, row.model, row.steps) for row in best.itertuples()] == [
        (1, "small", 10), (1, "big", 50), (1000, "small", 10), (1000, "big", 50)]
    assert best["total_flops"].tolist() == pytest.approx([1e12 + 1e10, 1e13 + 5e11, 1e12 + 1e13, 1e13 + 5e14])
    one, thousand = readings.training_plus_sampling_readings(table, best, "fid")
    assert one.startswith("Training plus 1 image, by FID: the best model is small (0.1M)")
    sentence = thousand
    assert sentence == ("Training plus 1,000 images, by FID: the best model is small (0.1M) from 1.1e13, then "
                        "big (1M) from 5.1e14 FLOPs in total.")


def test_default_image_counts_bracket_where_sampling_costs_as_much_as_training(table):
    # Per model, training / median FLOPs per image = 1e12 / 30e9 = 1e13 / 300e9 = 33: 10^2 around it.
    assert analysis.default_image_counts(table) == [1, 100, 10_000]


def test_figures_render_from_the_fixture_table(table, tmp_path):
    for path in (figures.quality_vs_training_compute(table, tmp_path),
                 figures.training_plus_sampling(table, tmp_path, "fid", images=[1, 1000])):
        assert path is not None and path.exists()
        with Image.open(path) as image:
            assert image.width > 400 and image.height > 200


def test_a_student_is_its_own_dashed_line_in_the_training_figure(table, tmp_path, monkeypatch):
    """A distilled model is not a rung of its teacher's ladder: joining it to the ladder by training FLOPs
    would draw a zigzag through both. Here "small"'s student (2e12 FLOPs) must sit on dashed lines alone."""
    student = table[table["model"] == "small"].assign(model="small-lcm", distilled_from="small", training_flops=2e12,
                                                      cell=lambda d: d["cell"].str.replace("small", "small-lcm"))
    drawn = {}
    monkeypatch.setattr(figures.style, "save", lambda figure, out_dir, name: drawn.setdefault(name, figure))
    figures.quality_vs_training_compute(pd.concat([table.assign(distilled_from=""), student]), tmp_path)
    lines = [line for ax in drawn["quality_vs_training_compute"].axes for line in ax.get_lines()]
    dashed = [line for line in lines if line.get_linestyle() == "--"]
    assert dashed and all(set(line.get_xdata()) == {2e12} for line in dashed)
    assert all(2e12 not in set(line.get_xdata()) for line in lines if line.get_linestyle() == "-")


def test_training_reading_says_when_every_model_ties(table):
    tied = table.assign(value=table["value"].where(table["metric"] != "compositional_accuracy", 0.0))
    accuracy = analysis.quality_vs_training(tied, "compositional_accuracy", budgets=[10, 50])
    (sentence,) = readings.training_readings(tied, {"compositional_accuracy": accuracy})
    assert "every model scores the same within every budget" in sentence


def test_models_without_training_flops_are_left_out_and_a_lone_model_draws_nothing(tmp_path):
    unknown = fixture_table({"small": float("nan")})
    assert set(analysis.quality_vs_training(unknown, "fid", budgets=[50])["model"]) == {"big"}
    assert figures.quality_vs_training_compute(unknown, tmp_path) is None
    assert figures.training_plus_sampling(unknown, tmp_path) is None


def test_report_page_has_the_training_section(table, tmp_path):
    table.to_csv(tmp_path / "metrics.csv", index=False, float_format="%.6g")
    pd.DataFrame({"model": ["big", "small"], "training_flops": [1e13, 1e12], "training_flops_source": "counted",
                  "training_steps": 600, "batch_size": 64, "samples_seen": 38400, "trained_parameters": [1e6, 1e5],
                  "training_seconds": [30.0, 10.0], "flops_not_included": 0}).to_csv(tmp_path / "training.csv", index=False)
    page = build_report(tmp_path / "metrics.csv", tmp_path / "out", "fixture", training_csv=tmp_path / "training.csv")
    html = page.read_text()
    assert "Training compute" in html and "quality_vs_training_compute.png" in html
    assert "training_plus_sampling_fid.png" in html and "Training plus 100 images" in html
    tables = tmp_path / "out" / "tables" / "toy-captions"
    assert (tables / "best_model_by_total_fid.csv").exists() and (tables / "quality_vs_training_fid.csv").exists()


def test_a_distilled_toy_model_is_charged_its_teachers_training_and_its_own_distillation(tmp_path, monkeypatch):
    import json

    from diffscale.cells import Paths
    from diffscale.manifest import LEDGER, write_manifest
    from diffscale.report.tidy import training_table

    monkeypatch.chdir(tmp_path)
    params = {"study": "s", "models": {"teacher": {"source": "toy", "width": 8},
                                       "student": {"source": "toy", "distilled_from": "teacher"}}}
    paths = Paths.of(params)
    for model, (flops, steps) in {"teacher": (4e11, 600), "student": (5e11, 300)}.items():
        folder = paths.model(model)
        folder.mkdir(parents=True)
        (folder / LEDGER).write_text(json.dumps({"training_flops": flops, "steps": steps, "batch_size": 64,
                                                 "samples_seen": 64 * steps, "parameters": 1000, "seconds": 1.0,
                                                 "not_included": {}}))
        write_manifest(folder)
    table = training_table(params, paths, ["teacher", "student"]).set_index("model")
    assert table.loc["student", "training_flops"] == 9e11 and table.loc["student", "distillation_flops"] == 5e11
    assert table.loc["teacher", "training_flops"] == 4e11 and pd.isna(table.loc["teacher", "distillation_flops"])
    assert table.loc["student", "training_steps"] == 300  # the distillation's own steps
