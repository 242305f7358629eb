"""Sampling: the sampler registry and the denoising loop."""

from diffscale.sampling.loop import CountingDenoiser, Trajectory, denoise
from diffscale.sampling.samplers import SAMPLERS, make_scheduler

__all__ = ["SAMPLERS", "CountingDenoiser", "Trajectory", "denoise", "make_scheduler"]
