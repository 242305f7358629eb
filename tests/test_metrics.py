"""Scoring: torch-fidelity metrics with the toy extractor, CLIPScore through open_clip, oracle metrics."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from diffscale.metrics import METRICS, fidelity
from diffscale.metrics.bootstrap import bootstrap_ci, mean_with_ci
from diffscale.metrics.score import CellImages
from diffscale.toyworld import clip as toy_clip
from diffscale.toyworld import oracle, scenes


@pytest.fixture(scope="module")
def toy_data():
    return scenes.sample_dataset(512, seed=3)


@pytest.fixture(scope="module")
def trained_oracle(toy_data, tmp_path_factory):
    images, labels, _ = toy_data
    model, _ = oracle.fit(images, labels, width=8, steps=150, batch_size=64, lr=3e-3, seed=0)
    folder = tmp_path_factory.mktemp("oracle")
    oracle.save(model, folder, {})
    return folder


def test_fid_is_zero_for_identical_sets_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    reference = torch.from_numpy(rng.normal(size=(400, 8)))
    statistics = fidelity.fid_features_to_statistics(reference)
    assert fidelity.fid(reference, statistics) == pytest.approx(0.0, abs=1e-6)
    near, far = fidelity.fid(reference + 0.5, statistics), fidelity.fid(reference + 2.0, statistics)
    assert near == pytest.approx(8 * 0.25, rel=1e-6) and far == pytest.approx(8 * 4.0, rel=1e-6)


class FeatureCell(CellImages):
    """A cell known only by its features, scored by the registry's metrics as a real cell is."""

    def __init__(self, features: torch.Tensor, reference: torch.Tensor):
        self.features, self.n, self.seed, self.resamples, self.confidence = features, len(features), 0, 30, 0.9
        self.scoring = SimpleNamespace(toy=True, extractor="test", reference_features=reference, reference_radius=None,
                                       reference_fid_statistics=fidelity.fid_features_to_statistics(reference),
                                       reference_kid_kernel=fidelity.kid_reference_kernel(reference))


def test_fidelity_cis_contain_their_estimate():
    rng = np.random.default_rng(1)
    generated, reference = (torch.from_numpy(rng.normal(size=(120, 8)) + 0.3), torch.from_numpy(rng.normal(size=(300, 8))))
    cell = FeatureCell(generated, reference)
    for metric in ("fid", "kid", "precision", "recall"):
        out = METRICS[metric].compute(cell)
        assert out["ci_low"] <= out["value"] <= out["ci_high"], metric
        assert out["ci_low"] < out["ci_high"], metric
    assert METRICS["fid"].compute(cell)["value"] == pytest.approx(
        fidelity.fid(generated, fidelity.fid_features_to_statistics(reference)))


def test_bootstrap_of_a_mean_brackets_it_and_narrows_with_more_images():
    rng = np.random.default_rng(2)
    small = mean_with_ci(rng.random(50), 200, 0.95, 0)
    large = mean_with_ci(rng.random(5000), 200, 0.95, 0)
    assert small["ci_low"] < small["value"] < small["ci_high"]
    assert (large["ci_high"] - large["ci_low"]) < (small["ci_high"] - small["ci_low"]) / 4
    assert bootstrap_ci(10, lambda idx: 1.0, 5, 0.9, 0) == (1.0, 1.0)


def test_toy_extractor_runs_through_torch_fidelity(toy_data, trained_oracle):
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    assert FEATURE_EXTRACTORS_REGISTRY[fidelity.TOY_EXTRACTOR] is fidelity.ToyOracleFeatures
    images = toy_data[0][:40]
    features = fidelity.extract_features(images, fidelity.TOY_EXTRACTOR, str(trained_oracle), batch_size=16)
    assert features.shape == (40, 128) and features.dtype == torch.float64
    again = fidelity.extract_features(images, fidelity.TOY_EXTRACTOR, str(trained_oracle), batch_size=7)
    torch.testing.assert_close(features, again, rtol=1e-4, atol=1e-4)  # batching changes float rounding only


def test_compositional_accuracy_rewards_the_right_prompt(toy_data, trained_oracle):
    from diffscale.metrics.compositional import per_image, prompt_targets
    from diffscale.toyworld.training import to_unit_range

    images, labels, captions = toy_data
    truth = [scenes.parse_caption(c).labels() for c in captions]
    wrong = truth[1:] + truth[:1]
    model = oracle.load(trained_oracle)
    right_scores, wrong_scores = per_image(model, images, truth), per_image(model, images, wrong)
    assert set(np.unique(right_scores["correct"])) <= {0.0, 1.0}
    assert right_scores["correct"].mean() > wrong_scores["correct"].mean() + 0.2
    assert right_scores["probability"].mean() > wrong_scores["probability"].mean() + 0.2
    # The probability is the product of each slot's probability of its asked class: it cannot exceed any slot's.
    pixels, targets = to_unit_range(images), prompt_targets(truth)
    slots = model.slot_probabilities(pixels, targets)
    np.testing.assert_allclose(right_scores["probability"], slots.prod(1).double().numpy(), rtol=1e-6)
    assert (right_scores["probability"] <= slots.min(1).values.double().numpy() + 1e-7).all()


def test_clipscore_runs_through_open_clips_local_dir_loader(toy_data, tmp_path):
    from PIL import Image

    from diffscale.metrics.clipscore import OpenClipScorer

    torch.manual_seed(0)
    config = toy_clip.model_config(width=32, layers=1)
    import open_clip

    toy_clip.save(open_clip.CLIP(**config), config, tmp_path)
    scorer = OpenClipScorer(f"local-dir:{tmp_path}")
    images = [Image.fromarray(a) for a in toy_data[0][:6]]
    scores = scorer.cosine(images, toy_data[2][:6], batch_size=4)
    assert scores.shape == (6,) and scores.dtype == torch.float32
    assert ((scores >= -1) & (scores <= 1)).all()
    torch.testing.assert_close(scores, scorer.cosine(images, toy_data[2][:6], batch_size=6))


def test_resampled_kid_equals_torch_fidelity_on_any_resample():
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

    from diffscale.metrics.fidelity import KID_KERNEL, ResampledKID, kid_reference_kernel

    def kid(generated, reference, subsets, seed):
        return kid_features_to_metric(generated, reference, kid_subsets=subsets, kid_subset_size=len(generated),
                                      rng_seed=seed, verbose=False, **KID_KERNEL)[KEY_METRIC_KID_MEAN]

    generator = torch.Generator().manual_seed(1)
    reference = torch.randn(300, 16, generator=generator, dtype=torch.float64)
    generated = 0.7 * torch.randn(80, 16, generator=generator, dtype=torch.float64) + 0.3
    fast = ResampledKID(generated, reference, 5, seed=3)
    assert fast(range(80), subsets=20) == pytest.approx(kid(generated, reference, 20, 3), rel=1e-9)
    resample = np.random.default_rng(0).integers(0, 80, 80)  # with repeats, as the bootstrap draws them
    assert fast(resample) == pytest.approx(kid(generated[resample], reference, 5, 3), rel=1e-9)
    shared = ResampledKID(generated, reference, 5, seed=3, reference_kernel=kid_reference_kernel(reference))
    assert shared(resample) == fast(resample)
    assert fast(resample) != fast(range(80))  # the resample is what is measured


def test_resampled_precision_recall_equals_torch_fidelity_on_the_full_set():
    from torch_fidelity.metric_prc import prc_features_to_metric

    from diffscale.metrics.fidelity import NEIGHBORHOOD, ResampledPrecisionRecall

    def precision_recall(generated, reference):
        out = prc_features_to_metric(generated, reference, prc_neighborhood=NEIGHBORHOOD, prc_batch_size=10000,
                                     save_cpu_ram=True, verbose=False)
        return {"precision": out["precision"], "recall": out["recall"]}

    generator = torch.Generator().manual_seed(0)
    reference = torch.randn(300, 16, generator=generator, dtype=torch.float64)
    generated = 0.7 * torch.randn(80, 16, generator=generator, dtype=torch.float64) + 0.3
    fast = ResampledPrecisionRecall(generated, reference)
    assert fast(torch.arange(80)) == precision_recall(generated, reference)
    subset = torch.tensor([3, 3, 7, 11, 20, 20, 20, 41, 50, 79])
    assert fast(subset) == precision_recall(generated[subset], reference)
