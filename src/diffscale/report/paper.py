"""The published numbers the toy ladder is compared with.

Mei et al., "Bigger is not Always Better: Scaling Properties of Latent
Diffusion Models", TMLR 2025, arXiv:2404.01367, Table 1.
"""

from __future__ import annotations

import pandas as pd

PAPER = "Mei et al. (2024)"
PAPER_SETTING = "DDIM, 50 steps, CFG 7.5, COCO-2014 val, FID-30K"
# The metrics of Table 1 that a toy study can compare with.
PAPER_METRICS = ("fid", "clip_score")

# params, base width c, GFLOPs of one UNet pass on a 64x64x4 latent (fp32), normalised cost
# (GFLOPs / 789.3, the 866M model), FID-30K and CLIP score (raw cosine), as printed.
# The 39M model's 25.3 GFLOPs is as printed; its normalised cost 0.07 implies ~55.
_TABLE_1 = [
    (39e6, 64, 25.3, 0.07, 25.30, 0.305),
    (83e6, 96, 102.7, 0.13, 24.30, 0.308),
    (145e6, 128, 161.5, 0.20, 24.18, 0.310),
    (223e6, 160, 233.5, 0.30, 23.76, 0.310),
    (318e6, 192, 318.5, 0.40, 22.83, 0.311),
    (430e6, 224, 416.6, 0.53, 22.35, 0.312),
    (558e6, 256, 527.8, 0.67, 22.15, 0.312),
    (704e6, 288, 652.0, 0.83, 21.82, 0.312),
    (866e6, 320, 789.3, 1.00, 21.55, 0.312),
    (2e9, 512, 1887.5, 2.39, 20.98, 0.312),
    (5e9, 768, 4082.6, 5.17, 20.14, 0.314),
]


def mei2024_table1() -> pd.DataFrame:
    """Mei et al. (arXiv:2404.01367), Table 1: the text-to-image ladder at 50 DDIM steps and CFG 7.5.

    One row per model size, ordered by parameters; `normalized_cost` is the paper's per-step cost unit,
    so sampling cost = normalized_cost x steps, as in the toy study's `relative_cost`.
    """
    table = pd.DataFrame(
        _TABLE_1, columns=["params", "width", "gflops_per_nfe", "normalized_cost", *PAPER_METRICS]
    )
    return table.astype({"params": "int64", "width": "int64"})
