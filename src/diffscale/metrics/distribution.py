"""Distribution metrics: how close a cell's images are to the data (FID, KID, precision, recall) and the
Inception Score, all computed by torch-fidelity's formulas, each with a bootstrap CI over the cell's images.

On toy prompt sets the features are the toy oracle's (torch-fidelity feature extractor
`diffscale-toy-oracle`) against the toy world's held-out reference images; on fetched prompt sets FID
compares Inception features with the fetched reference statistics. Set statistics are biased upward by
the duplicates a resample holds, so their CIs take only the spread from the bootstrap, centred on the
full-sample value.
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.metrics.registry import Metric, register_metric

fidelity = lazy_import("diffscale.metrics.fidelity")

TOY_FEATURES = ("toy:reference", "toy:oracle")
# Metrics of the extractor's features: a cell that has one stores its per-image features for paired comparisons.
FEATURE_METRICS = ("fid", "kid", "precision", "recall")


def fid(cell) -> dict:
    if cell.scoring.toy:
        statistics = cell.scoring.reference_fid_statistics
        details = {"feature_extractor": cell.scoring.extractor, "reference_n": len(cell.scoring.reference_features)}
    else:
        statistics = cell.scoring.reference_statistics
        details = {"feature_extractor": cell.scoring.extractor, "reference": "fetched statistics"}
    value = fidelity.fid(cell.features, statistics)
    return cell.with_ci(value, fidelity.ResampledFID(cell.features, statistics), center=True) | {"details": details}


def kid(cell) -> dict:
    features, reference = cell.features, cell.scoring.reference_features
    # Each resample averages fewer random subsets than the point estimate: the CI is about the images.
    resampled = fidelity.ResampledKID(features, reference, 5, cell.seed, cell.scoring.reference_kid_kernel)
    value = resampled(range(cell.n), subsets=100)  # torch-fidelity's KID of the cell, 100 subsets
    return cell.with_ci(value, resampled, center=True) | {
        "details": {"feature_extractor": cell.scoring.extractor, "reference_n": len(reference)}}


def precision_or_recall(name: str):
    def compute(cell) -> dict:
        resampled = cell.precision_recall
        value = resampled(range(cell.n))[name]  # equal to torch-fidelity's prc_features_to_metric (tested)
        return cell.with_ci(value, lambda idx: resampled(idx)[name], center=True) | {
            "details": {"feature_extractor": cell.scoring.extractor, "reference_n": len(cell.scoring.reference_features)}}
    return compute


def inception_score(cell) -> dict:
    return fidelity.inception_score(cell.logits, cell.resamples, cell.confidence, cell.seed) | {
        "details": {"feature_extractor": cell.scoring.extractor, "splits": 10}}


register_metric(Metric("fid", "FID", False, fid, {"toy-captions": TOY_FEATURES,
                                                   "fetched": ("scoring:fid_reference", "scoring:inception")},
                       "Frechet distance of the images' features to the data's"))
register_metric(Metric("kid", "KID", False, kid, {"toy-captions": TOY_FEATURES},
                       "kernel (unbiased) distance of the images' features to the data's"))
register_metric(Metric("precision", "precision", True, precision_or_recall("precision"), {"toy-captions": TOY_FEATURES},
                       "share of images inside the data's k-NN balls (fidelity)"))
register_metric(Metric("recall", "recall", True, precision_or_recall("recall"), {"toy-captions": TOY_FEATURES},
                       "share of data inside the images' k-NN balls (diversity)"))
register_metric(Metric("inception_score", "Inception Score", True, inception_score,
                       {"imagenet-classes": ("scoring:inception",)}, "torch-fidelity's Inception Score, 10 splits"))
