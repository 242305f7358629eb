"""Benchmark: the two inner loops the default study's cold run spends most of its scoring and training in.

Method (1 thread, as every job runs; each pair measured in the same run, reported as a ratio):
  - KID with its bootstrap, as a cell of 256 images against a 2,000-image reference of the toy oracle's 128-d
    features is scored (point estimate of 100 subsets, 100 resamples of 5): torch-fidelity's
    `kid_features_to_metric` on every resample against `fidelity.ResampledKID` (kernels computed once);
  - one training step of a toy denoiser (batch 32, 8x8x4 latents) with torch's default AdamW against the fused one,
    forward, backward and update timed apart (median of 50 steps after 10 of warm-up).
Run: `python benchmarks/cell_costs.py`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, kid_features_to_metric

from diffscale.metrics.bootstrap import bootstrap_ci
from diffscale.metrics.fidelity import KID_KERNEL, ResampledKID, kid_reference_kernel
from diffscale.toyworld.denoiser import build


def kid_bootstrap(generated: torch.Tensor, reference: torch.Tensor, resampled: bool) -> tuple[float, tuple]:
    """Seconds and (value, CI) of one cell's KID as `distribution.kid` computes it."""
    started = time.process_time()
    if resampled:
        fast = ResampledKID(generated, reference, 5, 0, kid_reference_kernel(reference))
        value, statistic = fast(range(len(generated)), subsets=100), fast
    else:
        def kid(features, subsets):
            return kid_features_to_metric(features, reference, kid_subsets=subsets, kid_subset_size=len(features),
                                          rng_seed=0, verbose=False, **KID_KERNEL)[KEY_METRIC_KID_MEAN]
        value, statistic = kid(generated, 100), lambda idx: kid(generated[idx], 5)
    ci = bootstrap_ci(len(generated), statistic, 100, 0.95, 0, value)
    return time.process_time() - started, (value, *ci)


def training_step(width: int, fused: bool, steps: int = 60, warmup: int = 10) -> dict[str, float]:
    torch.manual_seed(0)
    unet = build(width, 64, 4, 8)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, fused=fused)
    x, t, context = torch.randn(32, 4, 8, 8), torch.randint(0, 1000, (32,)), torch.randn(32, 16, 64)
    times = {"forward": [], "backward": [], "update": []}
    for step in range(steps):
        a = time.perf_counter()
        loss = unet(x, t, encoder_hidden_states=context).sample.pow(2).mean()
        b = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        c = time.perf_counter()
        optimizer.step()
        d = time.perf_counter()
        if step >= warmup:
            for phase, seconds in zip(times, (b - a, c - b, d - c)):
                times[phase].append(seconds)
    return {phase: 1e3 * float(np.median(values)) for phase, values in times.items()}


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    reference = torch.from_numpy(rng.normal(size=(2000, 128)))
    generated = torch.from_numpy(0.9 * rng.normal(size=(256, 128)) + 0.1)
    slow, slow_out = kid_bootstrap(generated, reference, resampled=False)
    fast, fast_out = kid_bootstrap(generated, reference, resampled=True)
    print(f"KID of one cell with its bootstrap: torch-fidelity per resample {slow:.2f} CPU-s, ResampledKID {fast:.2f} "
          f"({slow / fast:.1f}x); value and CI {np.round(slow_out, 6).tolist()} vs {np.round(fast_out, 6).tolist()}")
    for width in (4, 24):
        plain, fused = training_step(width, False), training_step(width, True)
        print(f"toy-w{width} training step (ms, median): default AdamW "
              f"{' + '.join(f'{v:.1f}' for v in plain.values())} = {sum(plain.values()):.1f}; fused "
              f"{' + '.join(f'{v:.1f}' for v in fused.values())} = {sum(fused.values()):.1f} "
              f"({sum(plain.values()) / sum(fused.values()):.2f}x) [forward + backward + update]")


if __name__ == "__main__":
    main()
