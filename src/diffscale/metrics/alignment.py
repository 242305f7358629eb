"""Alignment metrics: does each image show what its prompt asked for? Means over the images, with
bootstrap CIs; each also returns its per-image values (`per_image`), which paired comparisons read.

Compositional accuracy is read by the toy world's independent judge (another architecture and seed than
the oracle), so search guided by the oracle cannot inflate it; oracle confidence and CLIPScore are the
verifiers' own networks, the hacking diagonal of the verifier x metric matrix.
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.metrics.registry import Metric, register_metric

compositional = lazy_import("diffscale.metrics.compositional")
clipscore = lazy_import("diffscale.metrics.clipscore")

TOY_PROMPTS = ("toy-captions", "toy-compositional")


def clip_score(cell) -> dict:
    values = cell.scoring.clip.cosine(cell.images, cell.prompts).numpy()
    return cell.mean_with_ci(values) | {"per_image": values,
                                        "details": {"backbone": cell.scoring.clip_backbone, "convention": clipscore.CONVENTION}}


def judged(reading: str, judge: str, who: str):
    """A metric of one reading (`correct` or `probability`, see `compositional.per_image`) by the judge or oracle."""
    def compute(cell) -> dict:
        values = compositional.per_image(getattr(cell.scoring, judge), cell.pixels, cell.labels)[reading]
        return cell.mean_with_ci(values) | {"per_image": values, "details": {"judge": who}}
    return compute


register_metric(Metric("clip_score", "CLIPScore", True, clip_score,
                       {"toy-captions": ("toy:clip",), "toy-compositional": ("toy:clip",), "fetched": ("scoring:clip",)},
                       "cosine of the CLIP embeddings of image and prompt"))
register_metric(Metric("compositional_accuracy", "compositional accuracy", True,
                       judged("correct", "judge", "toy judge (independent of the oracle)"),
                       {kind: ("toy:judge",) for kind in TOY_PROMPTS}, "share of images whose every slot the judge reads as asked"))
# The judge's continuous reading: where accuracy counts a slot right or wrong, this keeps how sure the judge is,
# so a paired difference between two models resolves at a few hundred prompts (benchmarks/README.md).
register_metric(Metric("caption_probability", "caption probability", True,
                       judged("probability", "judge", "toy judge (independent of the oracle)"),
                       {kind: ("toy:judge",) for kind in TOY_PROMPTS},
                       "the judge's probability of the asked-for scene (product over slots), per image"))
register_metric(Metric("oracle_confidence", "oracle confidence", True,
                       judged("probability", "oracle", "toy oracle"),
                       {kind: ("toy:oracle",) for kind in TOY_PROMPTS}, "the oracle's probability of the asked-for scene"))
