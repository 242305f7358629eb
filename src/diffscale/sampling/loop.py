"""The denoising loop: batched, classifier-free guided, with an exact count of denoiser evaluations.

It is diffusers' pipeline loop without the pipeline: the scheduler still does every update, but the loop
owns the noise (one generator per image, so image i is the same whatever the batch), counts every
denoiser call, and hands each step's x0 prediction to an observer, which search algorithms use.

Conditioning is a dict of the denoiser's keyword arguments, every tensor batch-first (a pytree):
`{"encoder_hidden_states": ...}` for SD UNets, plus `added_cond_kwargs` for SDXL, `{"class_labels": ...}`
for DiT. `take` and `concat` index and join it like a tensor, so search can repeat or resample it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from torch.utils._pytree import tree_map

Conditioning = dict


def take(cond: Conditioning, index: torch.Tensor) -> Conditioning:
    """Rows `index` of every tensor in the conditioning."""
    return tree_map(lambda x: x[index.to(x.device)], cond)


def concat(*conds: Conditioning) -> Conditioning:
    return tree_map(lambda *xs: torch.cat(xs), *conds)


def generators_for(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds]


def gaussian(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """One unit-Gaussian draw per generator (on CPU, so the bytes do not depend on the device)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def initial_noise(seeds: list[int], shape: tuple[int, ...], device) -> tuple[torch.Tensor, list[torch.Generator]]:
    """One generator per image: its starting noise first, then any noise a stochastic sampler draws."""
    generators = generators_for(seeds)
    return gaussian(generators, shape).to(device), generators


class CountingDenoiser:
    """Wraps a diffusion backbone (UNet or DiT); `nfe` counts per-sample evaluations (a CFG pair counts 2)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.nfe = 0
        self.calls = 0

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.nfe += latents.shape[0]
        self.calls += 1
        timestep = torch.as_tensor(t, device=latents.device).expand(latents.shape[0])
        out = self.model(latents, timestep, **cond).sample
        # Models that also learn the variance (DiT) return [epsilon, variance] stacked on channels.
        return out[:, : latents.shape[1]] if out.shape[1] == 2 * latents.shape[1] else out


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
    alpha = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
    return (sample - (1 - alpha).sqrt() * epsilon) / alpha.sqrt()


def guided_epsilon(denoiser: CountingDenoiser, latents, t, cond: Conditioning, uncond: Conditioning, guidance: float):
    """eps_uncond + w (eps_cond - eps_uncond); at w = 1 the unconditional pass is skipped (1 NFE, not 2)."""
    if guidance == 1.0:
        return denoiser(latents, t, cond)
    both = denoiser(torch.cat([latents, latents]), t, concat(uncond, cond))
    eps_uncond, eps_cond = both.chunk(2)
    return eps_uncond + guidance * (eps_cond - eps_uncond)


def integrate(
    denoiser: CountingDenoiser,
    scheduler: SchedulerMixin,
    latents: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance: float,
    indices: range,
    generators: list[torch.Generator] | None = None,
    keep_x0: bool = False,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> Trajectory:
    """Run the scheduler steps at positions `indices` of `scheduler.timesteps`, starting from `latents`.

    `generators` (one per image) drive the stochastic samplers' fresh noise. `on_step(i, latents, x0)`
    sees every step. A sub-range resumes mid-trajectory, which search over paths needs: that is exact for
    schedulers whose step depends only on (t, x_t) (DDIM, DDPM), see `Sampler.resumable`.
    """
    trajectory = Trajectory(latents)
    for i in indices:
        t = scheduler.timesteps[i]
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


def denoise(
    denoiser: CountingDenoiser,
    scheduler: SchedulerMixin,
    noise: torch.Tensor,
    cond: Conditioning,
    uncond: Conditioning,
    guidance: float,
    steps: int,
    generators: list[torch.Generator] | None = None,
    keep_x0: bool = False,
    on_step: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> Trajectory:
    """Integrate from pure noise to x0 with `steps` scheduler steps.

    `noise` is unit Gaussian; the loop scales it to the scheduler's initial sigma.
    """
    scheduler.set_timesteps(steps, device=noise.device)
    return integrate(denoiser, scheduler, noise * scheduler.init_noise_sigma, cond, uncond, guidance,
                     range(len(scheduler.timesteps)), generators, keep_x0, on_step)
