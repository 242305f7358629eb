"""Benchmark: the sampling loop's overhead over the denoiser's own forward passes.

Method: the widest toy denoiser's architecture (width 40, random weights: the cost of a forward does not
depend on them), a batch of B images at 8x8x4 latents, DDIM with S steps and classifier-free guidance
(each step one forward of 2B rows). In one process, alternating, `repeats` times each:
  loop     `diffscale.sampling.loop.denoise`: scheduler, guidance, per-image noise, NFE counting, x0;
  forward  the same S forwards of the UNet on a 2B-row batch, nothing else.
Reported: the median seconds of each and their ratio (loop / forward; 1.0 is a free loop).
Run: `python benchmarks/loop_overhead.py [--batch 256] [--steps 20] [--threads 1]`.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from diffscale.sampling.loop import CountingDenoiser, denoise, initial_noise
from diffscale.sampling.samplers import make_scheduler
from diffscale.toyworld.denoiser import SD_SCHEDULE, build


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--width", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    unet = build(args.width, cross_attention_dim=64).eval()
    cond = {"encoder_hidden_states": torch.randn(args.batch, 16, 64)}
    uncond = {"encoder_hidden_states": torch.zeros(args.batch, 16, 64)}
    both = torch.cat([uncond["encoder_hidden_states"], cond["encoder_hidden_states"]])
    latents = torch.randn(2 * args.batch, 4, 8, 8)
    scheduler = make_scheduler("ddim", SD_SCHEDULE)
    scheduler.set_timesteps(args.steps)
    timesteps = list(scheduler.timesteps)

    def loop() -> float:
        noise, _ = initial_noise(list(range(args.batch)), (4, 8, 8), "cpu")
        started = time.perf_counter()
        with torch.no_grad():
            denoise(CountingDenoiser(unet), make_scheduler("ddim", SD_SCHEDULE), noise, cond, uncond, 2.0, args.steps)
        return time.perf_counter() - started

    def forward() -> float:
        started = time.perf_counter()
        with torch.no_grad():
            for t in timesteps:
                unet(latents, t.expand(len(latents)), encoder_hidden_states=both)
        return time.perf_counter() - started

    loop(), forward()  # warm-up: first calls allocate and pick kernels
    times = {"loop": [], "forward": []}
    for _ in range(args.repeats):
        times["loop"].append(loop())
        times["forward"].append(forward())
    medians = {k: statistics.median(v) for k, v in times.items()}
    print(f"batch {args.batch}, {args.steps} DDIM steps with CFG, width {args.width}, {args.threads} thread(s), "
          f"median of {args.repeats}")
    print(f"loop {medians['loop']:.3f} s, forward only {medians['forward']:.3f} s, "
          f"overhead ratio {medians['loop'] / medians['forward']:.3f}")


if __name__ == "__main__":
    main()
