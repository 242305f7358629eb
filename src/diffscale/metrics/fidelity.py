"""FID, KID and precision/recall through torch-fidelity, with the toy oracle registered as its feature extractor.

torch-fidelity owns feature extraction and the metric formulas; this module only registers the toy
feature extractor and bootstraps the metrics over a cell's images from the extracted features.
"""

from __future__ import annotations

import numpy as np
import torch
import torch_fidelity
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.metric_fid import KEY_METRIC_FID, fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, isc_features_to_metric
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric
from torch_fidelity.metric_prc import calc_cdist_part
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY
from torch_fidelity.utils import create_feature_extractor, get_featuresdict_from_dataset

from diffscale.metrics.bootstrap import bootstrap_ci
from diffscale.toyworld import oracle

TOY_EXTRACTOR = "diffscale-toy-oracle"
INCEPTION_EXTRACTOR = "inception-v3-compat"  # torch-fidelity's port of the TF FID Inception
FEATURE = "penultimate"
# What the report names as the space FID and KID are measured in. The toy features are not rescaled:
# their units make toy FIDs large, and the floor row (held-out real images) gives them their scale.
FEATURE_SPACE = {TOY_EXTRACTOR: "penultimate layer of the toy oracle, unscaled",
                 INCEPTION_EXTRACTOR: "Inception-v3 pool3, torch-fidelity's FID features"}


class ToyOracleFeatures(FeatureExtractorBase):
    """Penultimate activations of the toy attribute classifier, from uint8 images as torch-fidelity feeds them."""

    def __init__(self, name, features_list, feature_extractor_weights_path=None, **kwargs):
        super().__init__(name, features_list)
        if feature_extractor_weights_path is None:
            raise ValueError(f"{TOY_EXTRACTOR} needs feature_extractor_weights_path: the trained oracle folder")
        self.classifier = oracle.load(feature_extractor_weights_path)

    @staticmethod
    def get_provided_features_list():
        return (FEATURE,)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return FEATURE

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return None

    def forward(self, x: torch.Tensor):
        images = x.float().div(127.5).sub(1.0)
        return (self.classifier.features(images),)


if TOY_EXTRACTOR not in FEATURE_EXTRACTORS_REGISTRY:
    torch_fidelity.register_feature_extractor(TOY_EXTRACTOR, ToyOracleFeatures)


class _Uint8Images(torch.utils.data.Dataset):
    def __init__(self, images_nhwc: np.ndarray):
        self.images = images_nhwc

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return torch.from_numpy(np.ascontiguousarray(self.images[i].transpose(2, 0, 1)))


def extract_features(images_nhwc: np.ndarray, extractor: str, weights_path: str | None, batch_size: int = 256,
                     layer: str | None = None) -> torch.Tensor:
    """Features of one layer (default: the FID layer; `logits_unbiased` for the Inception Score)."""
    cuda = torch.cuda.is_available()
    layer = layer or (FEATURE if extractor == TOY_EXTRACTOR else "2048")
    feature_extractor = create_feature_extractor(
        extractor, [layer], cuda=cuda, feature_extractor_weights_path=weights_path, verbose=False,
    )
    # save_cpu_ram=True: no worker processes, which only slow a few hundred tiny images down.
    features = get_featuresdict_from_dataset(_Uint8Images(images_nhwc), feature_extractor, batch_size, cuda, True, False)
    return next(iter(features.values())).double()


def fid(generated: torch.Tensor, reference_statistics: dict) -> float:
    return fid_statistics_to_metric(fid_features_to_statistics(generated), reference_statistics, False)[KEY_METRIC_FID]


class ResampledFID:
    """FID of subsets of one generated set against fixed reference statistics, fast enough to bootstrap.

    torch-fidelity takes the matrix square root of sigma x sigma_ref with scipy's `sqrtm` (about 80 ms at
    128-d), which made a paired bootstrap of two cells cost 17 s. With the reference fixed, the trace of
    that root is the sum of the square roots of the eigenvalues of the symmetric A sigma A, A = sigma_ref^1/2
    (computed once): one `eigvalsh` per subset. Equal to torch-fidelity's FID to rounding (tested).
    """

    def __init__(self, generated: torch.Tensor, reference_statistics: dict):
        self.features = generated.double().numpy()
        self.mu_ref = np.asarray(reference_statistics["mu"], dtype=np.float64)
        sigma_ref = np.asarray(reference_statistics["sigma"], dtype=np.float64)
        values, vectors = np.linalg.eigh(sigma_ref)
        self.root_ref = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
        self.trace_ref = float(np.trace(sigma_ref))

    def __call__(self, idx) -> float:
        x = self.features[np.asarray(idx)]
        mu, sigma = x.mean(0), np.cov(x, rowvar=False)
        eigenvalues = np.linalg.eigvalsh(self.root_ref @ sigma @ self.root_ref)
        covariance_term = np.sqrt(np.clip(eigenvalues, 0, None)).sum()
        return float(((mu - self.mu_ref) ** 2).sum() + np.trace(sigma) + self.trace_ref - 2 * covariance_term)


def kid(generated: torch.Tensor, reference: torch.Tensor, subsets: int = 100, seed: int = 0) -> float:
    size = min(len(generated), len(reference), 1000)
    return kid_features_to_metric(
        generated, reference, kid_subsets=subsets, kid_subset_size=size, kid_degree=3, kid_gamma=None,
        kid_coef0=1, rng_seed=seed % 2**32, verbose=False,
    )[KEY_METRIC_KID_MEAN]


NEIGHBORHOOD = 3  # torch-fidelity's default k for the k-NN balls


def reference_k_radius(reference: torch.Tensor) -> torch.Tensor:
    """Each reference sample's distance to its k-th neighbour: the data balls, the same for every cell."""
    return calc_cdist_part(reference, reference).kthvalue(NEIGHBORHOOD + 1).values


class ResampledPrecisionRecall:
    """Precision and recall of resampled generated sets, from distances computed once.

    torch-fidelity recomputes the reference set's k-NN radii (a reference x reference distance matrix)
    on every call, which made a 100-resample bootstrap cost minutes per cell. The balls are the same
    (k-th neighbour, `calc_cdist_part` distances, `<=`), so at the full index set this gives torch-fidelity's
    numbers exactly (tested); a resample only re-indexes the generated rows.
    """

    def __init__(self, generated: torch.Tensor, reference: torch.Tensor, reference_radius: torch.Tensor | None = None):
        self.reference_radius = reference_k_radius(reference) if reference_radius is None else reference_radius
        self.cross = calc_cdist_part(generated, reference)  # generated x reference
        self.within = calc_cdist_part(generated, generated)
        self.in_data = (self.cross <= self.reference_radius).any(dim=1)  # generated sample inside a data ball

    def __call__(self, idx) -> dict[str, float]:
        idx = torch.as_tensor(idx)
        radius = self.within[idx][:, idx].kthvalue(NEIGHBORHOOD + 1, dim=1).values
        covered = (self.cross[idx].T <= radius).any(dim=1)  # reference sample inside a generated ball
        return {"precision": self.in_data[idx].float().mean().item(), "recall": covered.float().mean().item()}


def inception_score(logits: torch.Tensor, resamples: int, confidence: float, seed: int) -> dict:
    """torch-fidelity's Inception Score (10 splits) of the Inception logits, with a bootstrap CI over the images."""
    def isc(x):
        return isc_features_to_metric(x, splits=10, shuffle=True, rng_seed=seed % 2**32)[KEY_METRIC_ISC_MEAN]

    value = isc(logits)
    low, high = bootstrap_ci(len(logits), lambda idx: isc(logits[idx]), resamples, confidence, seed, value)
    return {"value": value, "ci_low": low, "ci_high": high, "n": len(logits)}
