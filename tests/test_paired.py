"""Paired comparisons, the FID/KID floor and FID-infinity, on synthetic features and values with known answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from diffscale.manifest import MANIFEST
from diffscale.metrics import fidelity, paired
from diffscale.report import analysis, readings
from diffscale.report.comparisons import (
    Comparisons,
    kid_inside_floor,
    ranking_checks,
    ranking_disagreements,
    with_differences,
)

RESAMPLES, CONFIDENCE = 200, 0.95


def cell(features: np.ndarray | None, values: dict | None = None, replicates: int = 1) -> paired.PerImage:
    n = len(features) if features is not None else len(next(iter(values.values())))
    keys = [(i // replicates, i % replicates) for i in range(n)]
    return paired.PerImage(keys, None if features is None else torch.from_numpy(features), values or {})


@pytest.fixture(scope="module")
def reference() -> paired.Reference:
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(2000, 6)))
    held_out = torch.from_numpy(rng.normal(size=(1000, 6)))
    return paired.Reference(fidelity.fid_features_to_statistics(features), "test space (6-d)", features, held_out)


def test_identical_cells_differ_by_exactly_zero(reference):
    features = np.random.default_rng(1).normal(size=(120, 6)) + 0.5
    values = {"compositional_accuracy": (np.random.default_rng(2).random(120) > 0.5).astype(float)}
    a, b = cell(features, values), cell(features.copy(), {k: v.copy() for k, v in values.items()})
    for metric in ("fid", "compositional_accuracy"):
        out = paired.paired_difference(metric, a, b, reference, RESAMPLES, CONFIDENCE, seed=3)
        assert (out["difference"], out["diff_ci_low"], out["diff_ci_high"]) == (0.0, 0.0, 0.0), metric


def test_a_constant_shift_is_beyond_noise_and_its_size_is_recovered(reference):
    values = np.random.default_rng(4).random(150)
    out = paired.paired_difference("clip_score", cell(None, {"clip_score": values + 0.01}),
                                   cell(None, {"clip_score": values}), reference, RESAMPLES, CONFIDENCE, seed=5)
    # Every resample sees the same shift: the CI is the shift itself (to rounding), far from zero.
    assert out["difference"] == pytest.approx(0.01)
    assert out["diff_ci_low"] == pytest.approx(0.01) and out["diff_ci_high"] == pytest.approx(0.01)
    unpaired = paired.unpaired_difference("clip_score", cell(None, {"clip_score": values + 0.01}),
                                          cell(None, {"clip_score": values}), reference, RESAMPLES, CONFIDENCE, seed=5)
    assert unpaired["diff_ci_low"] < 0 < unpaired["diff_ci_high"]  # the per-prompt spread hides it unpaired


def test_paired_ci_is_narrower_when_cells_share_per_prompt_variation(reference):
    rng = np.random.default_rng(6)
    prompt_effect = rng.normal(size=100).repeat(2)  # two replicates per prompt
    a = cell(None, {"m": prompt_effect + 0.05 + rng.normal(scale=0.2, size=200)}, replicates=2)
    b = cell(None, {"m": prompt_effect + rng.normal(scale=0.2, size=200)}, replicates=2)
    p = paired.paired_difference("m", a, b, reference, RESAMPLES, CONFIDENCE, seed=7)
    u = paired.unpaired_difference("m", a, b, reference, RESAMPLES, CONFIDENCE, seed=7)
    assert p["prompts"] == 100
    assert p["diff_ci_high"] - p["diff_ci_low"] < 0.5 * (u["diff_ci_high"] - u["diff_ci_low"])
    assert p["diff_ci_low"] > 0 and u["diff_ci_low"] < 0


def test_paired_fid_difference_sees_a_shift_of_shared_features(reference):
    rng = np.random.default_rng(8)
    base = rng.normal(size=(160, 6)) * 1.5 + 0.3
    out = paired.paired_difference("fid", cell(base + 0.4), cell(base), reference, RESAMPLES, CONFIDENCE, seed=9)
    assert out["difference"] == pytest.approx(fidelity.fid(torch.from_numpy(base + 0.4), reference.statistics)
                                              - fidelity.fid(torch.from_numpy(base), reference.statistics))
    assert out["diff_ci_low"] > 0


def test_cells_are_paired_by_prompt_and_replicate_not_by_file_order(reference):
    values = np.arange(10, dtype=float)
    a = paired.PerImage([(i, 0) for i in range(10)], None, {"m": values})
    shuffled = np.random.default_rng(0).permutation(10)
    b = paired.PerImage([(int(i), 0) for i in shuffled], None, {"m": values[shuffled]})
    out = paired.paired_difference("m", a, b, reference, RESAMPLES, CONFIDENCE, seed=0)
    assert (out["diff_ci_low"], out["diff_ci_high"]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="not paired"):
        paired.paired_difference("m", a, paired.PerImage([(99, 0)], None, {"m": np.zeros(1)}), reference, 10, 0.9, 0)


def test_resampled_fid_equals_torch_fidelity(reference):
    rng = np.random.default_rng(10)
    features = torch.from_numpy(rng.normal(size=(90, 6)) @ rng.normal(size=(6, 6)) + 0.2)
    fast = fidelity.ResampledFID(features, reference.statistics)
    for idx in (np.arange(90), rng.integers(0, 90, 90)):
        assert fast(idx) == pytest.approx(fidelity.fid(features[idx], reference.statistics), rel=1e-7)


def test_floor_is_the_fid_of_held_out_real_images_at_the_same_n(reference):
    out = paired.floor("fid", reference, 100, RESAMPLES, CONFIDENCE, seed=11)
    subset = reference.held_out[np.sort(np.random.default_rng(11).choice(len(reference.held_out), 100, replace=False))]
    assert out["value"] == pytest.approx(fidelity.fid(subset, reference.statistics)) and out["n"] == 100
    assert out["ci_low"] <= out["value"] <= out["ci_high"]
    # Real images score above zero only by the small-N bias, which shrinks with N and sits below a shifted set's FID.
    assert paired.floor("fid", reference, 1000, 50, CONFIDENCE, 11)["value"] < out["value"]
    shifted = fidelity.fid(subset + 0.5, reference.statistics)
    assert out["value"] < shifted
    kid = paired.floor("kid", reference, 100, 20, CONFIDENCE, seed=11)
    assert abs(kid["value"]) < 0.05  # KID is unbiased: about zero for real images
    with pytest.raises(ValueError, match="held-out"):
        paired.floor("fid", reference, 5000, 10, CONFIDENCE, 0)


def test_extrapolation_to_infinite_n_is_exact_on_a_line_in_one_over_n():
    sizes = np.array([40, 60, 100, 160])
    assert paired.extrapolate(sizes, 3.0 + 7.0 / sizes) == pytest.approx(3.0)


def test_fid_infinity_removes_the_small_n_bias(reference):
    rng = np.random.default_rng(12)
    statistics = {"mu": np.zeros(6), "sigma": np.eye(6)}  # the exact data distribution
    features = torch.from_numpy(rng.normal(size=(800, 6)) + np.array([1.0, 0, 0, 0, 0, 0]))
    # True FID is |shift|^2 = 1; FID at N = 200 carries a bias of order d / N above it.
    at_200 = fidelity.fid(features[:200], statistics)
    infinite = paired.fid_infinity(features, statistics, seed=0)
    assert abs(infinite - 1.0) < abs(at_200 - 1.0)
    assert infinite == pytest.approx(1.0, abs=0.1)


def write_cells(folder, reference, cells: dict) -> None:
    folder.mkdir(parents=True)
    reference.save(folder / paired.REFERENCE_FILE)
    for name, data in cells.items():
        data.save(folder / f"{name}{paired.PER_IMAGE_SUFFIX}")


def test_report_calls_a_winner_only_where_the_paired_ci_excludes_zero(tmp_path, reference):
    rng = np.random.default_rng(13)
    base = rng.normal(size=(100, 6))
    noise = rng.normal(size=100)
    write_cells(tmp_path / "block", reference, {
        "small": cell(base + 0.6, {"m": noise}), "big": cell(base + 0.1, {"m": noise + 1.0}),
        "twin": cell(base + 0.6, {"m": noise}),
    })
    comparisons = Comparisons([tmp_path / "block"], RESAMPLES, CONFIDENCE, seed=0)
    table = pd.DataFrame({"cell": ["big", "small"], "other": ["small", "twin"]})
    out = with_differences(table, comparisons, "fid", "cell", "other")
    assert out["beyond_noise"].tolist() == [True, False]
    assert out["difference"].iloc[0] < 0 and out["difference"].iloc[1] == 0.0
    only_first = with_differences(table, comparisons, "fid", "cell", "other", pd.Series([True, False]))
    assert only_first["beyond_noise"].tolist() == [True, None]
    missing = with_differences(pd.DataFrame({"cell": ["big"], "other": ["absent"]}), comparisons, "fid", "cell", "other")
    assert missing["beyond_noise"].tolist() == [None] and missing["difference"].isna().all()
    # Round trip of the files scoring writes.
    loaded = comparisons.per_image("small")
    assert loaded.keys == [(i, 0) for i in range(100)] and torch.equal(loaded.features, torch.from_numpy(base + 0.6).float().double())
    assert comparisons.feature_space("small") == "test space (6-d)"


def test_ranking_checks_name_the_disagreements(tmp_path, reference):
    rng = np.random.default_rng(14)
    write_cells(tmp_path / "block", reference, {f"c{i}": cell(rng.normal(size=(200, 6)) + shift)
                                                for i, shift in enumerate((1.0, 0.5, 0.0))})
    comparisons = Comparisons([tmp_path / "block"], 20, CONFIDENCE, seed=0)
    table1 = pd.DataFrame({"model": ["a", "b", "c"], "params": [1, 2, 3], "cell": ["c0", "c1", "c2"],
                           # KID ranks b and c the other way round: the check must say so.
                           "fid": [9.0, 4.0, 1.0], "kid": [0.9, 0.1, 0.2]})
    checks = ranking_checks(table1, comparisons)
    assert checks["rank_fid"].tolist() == [3, 2, 1] and checks["rank_kid"].tolist() == [3, 1, 2]
    assert checks["rank_fid_infinity"].tolist() == [3, 2, 1]
    assert (checks["fid_floor"] < checks["fid_infinity"].iloc[0]).all()
    assert ranking_disagreements(checks) == ["by KID: b 2 -> 1, c 1 -> 2"]


def test_kid_inside_its_real_data_floor_ranks_nothing():
    """Every model's KID inside the CI of held-out real images' KID: its ranks are noise, so the check leaves
    KID out and says why; one model above the floor and KID's disagreement counts again."""
    checks = pd.DataFrame({"model": ["a", "b", "c"], "params": [1, 2, 3], "fid": [9.0, 4.0, 1.0], "fid_floor": 0.5,
                           "fid_infinity": [8.0, 3.0, 1.0], "kid": [0.003, 0.001, 0.002], "kid_floor": 0.002,
                           "kid_floor_ci_high": 0.004, "rank_fid": [3, 2, 1], "rank_kid": [3, 1, 2],
                           "rank_fid_infinity": [3, 2, 1], "feature_space": "test space"})
    assert kid_inside_floor(checks) and ranking_disagreements(checks) == []
    reading = readings.ranking_reading(checks, ranking_disagreements(checks), kid_inside_floor(checks))
    assert "FID-infinity ranks the models as FID does. KID ranks nothing here" in reading
    assert "KID and FID-infinity rank" not in reading
    above = checks.assign(kid=[0.009, 0.001, 0.002])
    assert not kid_inside_floor(above) and ranking_disagreements(above) == ["by KID: b 2 -> 1, c 1 -> 2"]


@pytest.mark.engine  # reads the shared cold run of the smoke study
def test_scoring_writes_per_image_data_that_the_report_pairs(smoke_run):
    """End to end: every scored cell has its per-image file, keyed like its records; the report's headline
    table carries paired differences and its Table 1 the floor and ranking checks."""
    study = smoke_run / "results" / yaml.safe_load((smoke_run / "study.yaml").read_text())["study"]
    for scores in (study / "scores").glob("*/*.json"):
        if scores.name == MANIFEST:
            continue
        per_image = paired.PerImage.load(scores.with_suffix(paired.PER_IMAGE_SUFFIX))
        samples = study / "samples" / scores.parent.name / scores.stem / "records.jsonl"
        records = [json.loads(line) for line in samples.read_text().splitlines()]
        assert per_image.keys == [(r["prompt_id"], r["replicate"]) for r in records]
        if "toy-captions" in scores.stem:
            assert per_image.features is not None and len(per_image.features) == len(records)
            assert paired.Reference.load(scores.parent / paired.REFERENCE_FILE).held_out is not None
    tables = smoke_run / "reports" / study.name / "tables" / "toy-captions"
    best = pd.read_csv(tables / "best_per_budget_caption_probability.csv")  # the smoke study's primary metric
    contested = best[best["runner_up_cell"].notna()]
    assert not contested.empty and contested["difference"].notna().all()
    checks = pd.read_csv(tables / "ranking_checks.csv")
    assert checks["fid_floor"].notna().all() and checks["fid_infinity"].notna().all()


def test_headline_counts_the_crossovers_each_metric_calls(tmp_path, reference):
    """FID features identical in every cell (no FID difference is beyond noise) while the judge's per-image
    accuracy follows each cell's table value (every accuracy crossover is): the headline counts each apart."""
    from diffscale.report.headline import prompt_set_headline
    from test_report import synthetic_metrics

    table = analysis.without_search(synthetic_metrics())
    rng = np.random.default_rng(15)
    features = rng.normal(size=(64, 6))
    accuracy = table[table["metric"] == "compositional_accuracy"].set_index("cell")["value"]
    write_cells(tmp_path / "block", reference, {
        name: cell(features, {"compositional_accuracy": value + 0.01 * rng.normal(size=64)})
        for name, value in accuracy.items()})
    comparisons = Comparisons([tmp_path / "block"], RESAMPLES, CONFIDENCE, seed=0)
    numbers = prompt_set_headline(table, 50, "toy-c", comparisons)
    judged = analysis.crossovers(analysis.best_model_per_budget(table, "compositional_accuracy"))
    assert len(numbers["crossover_budgets"]) == 2 and numbers["crossovers"]["fid"] == {"crossovers": 2, "beyond_noise": 0}
    assert numbers["crossovers"]["compositional_accuracy"] == {"crossovers": len(judged), "beyond_noise": len(judged)}
    assert len(judged) > 0
