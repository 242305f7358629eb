"""The denoising loop: batched, classifier-free guided, with an exact count of denoiser evaluations.

It is diffusers' pipeline loop without the pipeline: the scheduler still does every update, but the loop
owns the noise (one generator per image, so image i is the same whatever the batch), counts every
denoiser call, and hands each step's x0 prediction to an observer, which search algorithms use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin


class CountingDenoiser:
    """Wraps a UNet; `nfe` counts per-sample evaluations (a CFG pair counts 2)."""

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet
        self.nfe = 0
        self.calls = 0

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        self.nfe += latents.shape[0]
        self.calls += 1
        return self.unet(latents, t, encoder_hidden_states=context).sample


@dataclass
class Trajectory:
    latents: torch.Tensor  # the final (or, when stopped early, the current) latents
    x0_predictions: list[torch.Tensor] = field(default_factory=list)  # one per step, when kept


def x0_from_epsilon(scheduler: SchedulerMixin, sample: torch.Tensor, epsilon: torch.Tensor, t) -> torch.Tensor:
    """The clean-latent estimate x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t), in the scheduler's own units.

    Sigma-parameterised schedulers (Euler, Heun, ...) keep x_t = x0 + sigma eps, so there x0 = x_t - sigma eps.
    """
    if hasattr(scheduler, "sigmas") and getattr(scheduler, "init_noise_sigma", 1.0) != 1.0:
        sigma = scheduler.sigmas[scheduler.step_index if scheduler.step_index is not None else 0].to(sample.dtype)
        return sample - sigma * epsilon
    alpha = scheduler.alphas_cumprod[int(t)].to(sample.dtype)
    return (sample - (1 - alpha).sqrt() * epsilon) / alpha.sqrt()


def guided_epsilon(denoiser: CountingDenoiser, latents, t, cond, uncond, guidance: float) -> torch.Tensor:
    """eps_uncond + w (eps_cond - eps_uncond); at w = 1 the unconditional pass is skipped (1 NFE, not 2)."""
    if guidance == 1.0:
        return denoiser(latents, t, cond)
    both = denoiser(torch.cat([latents, latents]), t, torch.cat([uncond, cond]))
    eps_uncond, eps_cond = both.chunk(2)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def denoise(
    denoiser: CountingDenoiser,
    scheduler: SchedulerMixin,
    noise: torch.Tensor,
    cond: torch.Tensor,
    uncond: torch.Tensor,
    guidance: float,
    steps: int,
    generators: list[torch.Generator] | None = None,
    keep_x0: bool = False,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> Trajectory:
    """Integrate from pure noise to x0 with `steps` scheduler steps.

    `noise` is unit Gaussian; the loop scales it to the scheduler's initial sigma. `generators` (one per
    image) drive the stochastic samplers' fresh noise. `on_step(i, latents, x0)` sees every step.
    """
    scheduler.set_timesteps(steps, device=noise.device)
    latents = noise * scheduler.init_noise_sigma
    trajectory = Trajectory(latents)
    for i, t in enumerate(scheduler.timesteps):
        model_input = scheduler.scale_model_input(latents, t)
        epsilon = guided_epsilon(denoiser, model_input, t, cond, uncond, guidance)
        # x0 before the step: sigma-based schedulers advance their step index inside `step`.
        x0 = x0_from_epsilon(scheduler, latents, epsilon, t) if keep_x0 or on_step is not None else None
        # Only stochastic schedulers take a generator (deterministic ones reject the argument).
        noise_source = {"generator": generators} if generators is not None else {}
        latents = scheduler.step(epsilon, t, latents, return_dict=True, **noise_source).prev_sample
        if keep_x0:
            trajectory.x0_predictions.append(x0)
        if on_step is not None:
            on_step(i, latents, x0)
    trajectory.latents = latents
    return trajectory
