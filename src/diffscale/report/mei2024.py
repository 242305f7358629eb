"""Mei et al., "Bigger is not Always Better: Scaling Properties of Latent Diffusion Models"
(arXiv:2404.01367, TMLR 2025), Table 1: the text-to-image ladder evaluated with 50-step DDIM and CFG 7.5
on COCO-2014 validation captions (FID-30K, CLIP score as the raw cosine).
"""

from __future__ import annotations

import pandas as pd

# params, base width c, GFLOPs of one UNet pass at 64x64x4 (fp32), normalised cost, FID-30K, CLIP score.
# The paper prints 25.3 GFLOPs for the 39M model; the other entries scale as c^2, which suggests ~55.
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


def table1() -> pd.DataFrame:
    return pd.DataFrame(_TABLE_1, columns=["params", "width", "gflops_per_nfe", "normalized_cost", "fid", "clip_score"])
