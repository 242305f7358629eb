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
from torch_fidelity.metric_kid import kernel_poly, mmd2
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


# torch-fidelity's KID kernel, its defaults: (x.y / d + 1)^3; subsets of min(N, reference N, 1000) images.
KID_KERNEL = {"kid_kernel_poly_degree": 3, "kid_kernel_poly_gamma": None, "kid_kernel_poly_coef0": 1}


def kid_reference_kernel(reference) -> np.ndarray:
    """The reference x reference kernel of KID: the same for every cell of a prompt set (`ResampledKID`)."""
    reference = reference.double().numpy() if torch.is_tensor(reference) else reference
    return kernel_poly(reference, reference, **KID_KERNEL)


class ResampledKID:
    """KID of resampled generated sets against a fixed reference, from kernels computed once.

    torch-fidelity's KID draws `subsets` index sets and computes three polynomial kernel matrices for each: a
    100-resample bootstrap of 5 subsets built 1,500 of them per cell, most of a cell's scoring time. A kernel
    entry does not depend on the subset it is in, so this computes the generated x generated and generated x
    reference kernels once per cell, the reference x reference one once per prompt set (torch-fidelity's
    `kernel_poly`), draws the subsets as `kid_features_to_metric` does and hands each subset's rows and
    columns to its `mmd2`. Equal to `kid_features_to_metric` to rounding (tested).
    """

    def __init__(self, generated: torch.Tensor, reference: torch.Tensor, subsets: int, seed: int,
                 reference_kernel: np.ndarray | None = None):
        generated, reference = generated.double().numpy(), reference.double().numpy()
        self.n_reference, self.subsets, self.seed = len(reference), subsets, seed % 2**32
        self.k_gg = kernel_poly(generated, generated, **KID_KERNEL)
        self.k_gr = kernel_poly(generated, reference, **KID_KERNEL)
        self.k_rr = kid_reference_kernel(reference) if reference_kernel is None else reference_kernel
        # The j-th reference subset depends on the seed and the number of images only (the draws before it
        # have fixed sizes), so every resample of a bootstrap reads the same `subsets` blocks of k_rr: gathered
        # once. The point estimate's further subsets are read once and not kept.
        self.reference_blocks: dict[tuple[int, int], np.ndarray] = {}

    def __call__(self, idx, subsets: int | None = None) -> float:
        idx = np.asarray(idx)
        size = min(len(idx), self.n_reference, 1000)
        rng = np.random.RandomState(self.seed)
        mmds = []
        for j in range(subsets or self.subsets):
            g = idx[rng.choice(len(idx), size, replace=False)]
            r = rng.choice(self.n_reference, size, replace=False)
            block = self.reference_blocks.get((len(idx), j))
            if block is None:
                block = self.k_rr[np.ix_(r, r)]
                if j < self.subsets:
                    self.reference_blocks[len(idx), j] = block
            mmds.append(mmd2(self.k_gg[np.ix_(g, g)], self.k_gr[np.ix_(g, r)], block))
        return float(np.mean(mmds))


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
