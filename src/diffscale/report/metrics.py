"""What the report knows about each metric, read from the metric registry: its direction, its name in
prose and its place in tables. Metrics outside the registry (verifiers scored as metrics) are scores
named by their key."""

from __future__ import annotations

from diffscale.metrics import METRICS as REGISTRY
from diffscale.metrics import display_name, higher_is_better

# The metrics the report plots, in this order, when present; other metrics still reach the tables. The first present
# is the primary metric (`analysis.primary_metric`): the judge's caption probability in the toy world, a per-image
# reading independent of every verifier that resolves size differences at a few hundred prompts; FID elsewhere,
# as Mei et al.
HEADLINE_METRICS = ("caption_probability", "fid", "clip_score", "compositional_accuracy")


def known_metrics() -> tuple[str, ...]:
    """The registered metrics in the registry's order (unknown ones follow alphabetically in tables)."""
    return tuple(REGISTRY.names())


def metric_name(metric: str) -> str:
    """The metric as a reader writes it ("FID", "CLIPScore")."""
    return display_name(metric)


__all__ = ["HEADLINE_METRICS", "higher_is_better", "known_metrics", "metric_name"]
