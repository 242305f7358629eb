"""The metric registry: what each metric is, which prompt sets it applies to, what it reads, how it is computed.

A metric scores a whole cell (its images and records) with a confidence interval. Its entry says its
direction (the report's winners and gains read it), its display name, and per prompt-set kind the
inputs it needs there: `toy:<component>` (the toy world's reference set, oracle, judge or CLIP, which
become the scoring job's dependencies) or `scoring:<key>` (an evaluation input the study must configure
under `scoring`, checked before any job runs). A metric applies to exactly the kinds it names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from diffscale.registry import Registry

if TYPE_CHECKING:
    from diffscale.metrics.score import CellImages

PROMPT_KINDS = ("toy-captions", "toy-compositional", "fetched", "imagenet-classes")


@dataclass(frozen=True)
class Metric:
    name: str
    display: str  # as a reader writes it: "FID", "CLIPScore"
    higher_is_better: bool
    compute: Callable[[CellImages], dict]  # -> value, ci_low, ci_high, n (and details)
    needs: dict[str, tuple[str, ...]]  # prompt-set kind -> the inputs it reads there
    description: str = ""

    def applies_to(self, kind: str) -> bool:
        return kind in self.needs


METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    unknown = set(metric.needs) - set(PROMPT_KINDS)
    if unknown:
        raise ValueError(f"metric {metric.name!r}: unknown prompt-set kinds {sorted(unknown)}; known: {list(PROMPT_KINDS)}")
    return METRICS.register(metric.name, metric)


def higher_is_better(metric: str) -> bool:
    """A registered metric's direction; anything else (a verifier scored as a metric) is a score."""
    return METRICS[metric].higher_is_better if metric in METRICS else True


def display_name(metric: str) -> str:
    return METRICS[metric].display if metric in METRICS else metric.replace("_", " ")
