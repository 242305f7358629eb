"""Per-cell evaluation: one registry of metrics (`METRICS`), each with its direction, the prompt sets it
applies to, what it reads and how it is computed with its CI; `score` runs them on a block of cells."""

# Each module registers its metrics, in this order (the schema and the report list them so).
from diffscale.metrics import distribution, alignment  # noqa: F401,I001
from diffscale.metrics.registry import METRICS, Metric, display_name, higher_is_better, register_metric

__all__ = ["METRICS", "Metric", "display_name", "higher_is_better", "register_metric"]
