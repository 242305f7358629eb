"""The denoising loop: batched, classifier-free guided, with an exact count of denoiser evaluations.

It is diffusers' pipeline loop without the pipeline: the scheduler still does every update, but the loop
owns the noise (one generator per image, so image i is the same whatever the batch), counts every
denoiser call, and hands each step's x0 prediction to an observer, which search algorithms use.

Conditioning is a dict of the denoiser's keyword arguments, every tensor batch-first (a pytree):
`{"encoder_hidden_states": ...}` for SD UNets, plus `added_cond_kwargs` for SDXL, `{"class_labels": ...}`
for DiT. `take` and `concat` index and join it like a tensor, so search can repeat or resample it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diffscale.lazy import lazy_import
from diffscale.sampling.samplers import init_noise_sigma, scheduler_kind

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

torch = lazy_import("torch")
pytree = lazy_import("torch.utils._pytree")

Conditioning = dict


def take(cond: Conditioning, index: torch.Tensor) -> Conditioning:
    """Rows `index` of every tensor in the conditioning."""
    return pytree.tree_map(lambda x: x[index.to(x.device)], cond)


def concat(*conds: Conditioning) -> Conditioning:
    return pytree.tree_map(lambda *xs: torch.cat(xs), *conds)


def generators_for(seeds: list[int]) -> list[torch.Generator]:
    return [torch.Generator(device="cpu").manual_seed(s) for s in seeds]


def gaussian(generators: list[torch.Generator], shape: tuple[int, ...]) -> torch.Tensor:
    """One unit-Gaussian draw per generator (on CPU, so the bytes do not depend on the device)."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators])


def initial_noise(seeds: list[int], shape: tuple[int, ...], device) -> tuple[torch.Tensor, list[torch.Generator]]:
    """One generator per image: its starting noise first, then any noise a stochastic sampler draws."""
    generators = generators_for(seeds)
    return gaussian(generators, shape).to(device), generators


def drop_learned_variance(out: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """Models that also learn the variance (DiT, PixArt) return [prediction, variance] stacked on channels;
    the scheduler supplies its own variance, so only the prediction is kept, as their pipelines do."""
    return out[:, : latents.shape[1]] if out.shape[1] == 2 * latents.shape[1] else out


def evaluate(backbone: torch.nn.Module, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """The default backbone call (UNets, DiT): `backbone(latents, t, **cond).sample`, learned variance dropped.

    A pipeline family whose backbone takes other arguments (FLUX, SD3, PixArt) has its own `Family.call`.
    """
    return drop_learned_variance(backbone(latents, timesteps, **cond).sample, latents)


class CountingDenoiser:
    """Wraps a diffusion backbone; `nfe` counts per-sample evaluations (a CFG pair counts 2).

    `call(backbone, latents, timesteps, cond)` evaluates the backbone the way its pipeline family does
    (default `evaluate`); `timesteps` arrive expanded to the batch.
    """

    def __init__(self, model: torch.nn.Module, call: Callable[..., torch.Tensor] | None = None):
        self.model = model
        self.call = call or evaluate
        self.nfe = 0
        self.calls = 0

    def __call__(self, latents: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        self.nfe += latents.shape[0]
        self.calls += 1
        timestep = torch.as_tensor(t, device=latents.device).expand(latents.shape[0])
        return self.call(self.model, latents, timestep, cond)


@dataclass
class Trajectory:
    latents: torch.Tensor  # the final (or, when stopped early, the current) latents
    x0_predictions: list[torch.Tensor] = field(default_factory=list)  # one per step, when kept


def x0_prediction(scheduler: SchedulerMixin, step_output, sample: torch.Tensor, model_output: torch.Tensor, t,
                  index: int) -> torch.Tensor:
    """The clean-latent estimate x0 at this step (position `index` of `scheduler.timesteps`).

    Flow-matching schedulers return none (diffusers 0.42); on the rectified-flow path
    x_t = (1 - sigma) x0 + sigma eps the model predicts the velocity v = eps - x0, so

        flow:          x0 = x_t - sigma v,   sigma = scheduler.sigmas[index]

    (their `sigmas` run parallel to `timesteps`, Heun's repeated points included). Most diffusion schedulers
    return x0 from `step` (`pred_original_sample`, in their own parameterisation: epsilon, v or sample
    prediction, sigma- or alpha-scaled latents; LCMScheduler's `denoised`). Multistep solvers that do not (DPM-Solver++, UniPC) run on
    the variance-preserving schedule x_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps, where

        epsilon:       x0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t)
        v_prediction:  x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v
        sample:        x0 = the model output

    with a_t = alphas_cumprod[t]; any other prediction type is refused rather than guessed.
    """
    if scheduler_kind(scheduler) == "flow":
        sigma = scheduler.sigmas[index].to(sample.device, sample.dtype)
        return sample - sigma * model_output
    for name in ("pred_original_sample", "denoised"):  # LCMScheduler calls its consistency function's x0 `denoised`
        x0 = getattr(step_output, name, None)
        if x0 is not None:
            return x0
    if not float(t).is_integer():
        raise ValueError(f"{type(scheduler).__name__}: x0 needs an integer training timestep, got {float(t)}")
    alpha = scheduler.alphas_cumprod[int(t)].to(sample.device, sample.dtype)
    prediction = scheduler.config.prediction_type
    if prediction == "epsilon":
        return (sample - (1 - alpha).sqrt() * model_output) / alpha.sqrt()
    if prediction == "v_prediction":
        return alpha.sqrt() * sample - (1 - alpha).sqrt() * model_output
    if prediction == "sample":
        return model_output
    raise ValueError(f"{type(scheduler).__name__}: no x0 prediction for prediction_type {prediction!r}; "
                     "supported: ['epsilon', 'v_prediction', 'sample']")


def guided_output(denoiser: CountingDenoiser, latents, t, cond: Conditioning, uncond: Conditioning, guidance: float):
    """out_uncond + w (out_cond - out_uncond); at w = 1 the unconditional pass is skipped (1 NFE, not 2).

    The same linear combination serves every prediction type (epsilon, v, x0), as diffusers' pipelines do.
    """
    if guidance == 1.0:
        return denoiser(latents, t, cond)
    both = denoiser(torch.cat([latents, latents]), t, concat(uncond, cond))
    out_uncond, out_cond = both.chunk(2)
    return out_uncond + guidance * (out_cond - out_uncond)


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
    schedulers whose step depends only on (t, x_t) (DDIM, DDPM, flow Euler), see `Sampler.resumable`; flow
    schedulers count their steps, so resume on a fresh one whose begin index is the sub-range's start.
    """
    trajectory = Trajectory(latents)
    flow = scheduler_kind(scheduler) == "flow"
    for i in indices:
        t = scheduler.timesteps[i]
        model_input = latents if flow else scheduler.scale_model_input(latents, t)  # a flow model reads x_t as is
        output = guided_output(denoiser, model_input, t, cond, uncond, guidance)
        # Only stochastic schedulers take a generator (deterministic ones reject the argument).
        noise_source = {"generator": generators} if generators is not None else {}
        step = scheduler.step(output, t, latents, return_dict=True, **noise_source)
        x0 = x0_prediction(scheduler, step, latents, output, t, i) if keep_x0 or on_step is not None else None
        latents = step.prev_sample
        if keep_x0:
            trajectory.x0_predictions.append(x0)
        if on_step is not None:
            on_step(i, latents, x0)
    trajectory.latents = latents
    return trajectory


def set_schedule(scheduler: SchedulerMixin, steps: int, device, options: dict | None = None) -> None:
    """The scheduler's timesteps for `steps` steps; `options` are the model's extra `set_timesteps` arguments
    (FLUX's dynamic shifting needs `mu`, from the image size)."""
    scheduler.set_timesteps(steps, device=device, **(options or {}))


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
    schedule_options: dict | None = None,
) -> Trajectory:
    """Integrate from pure noise to x0 with `steps` scheduler steps (`schedule_options`: see `set_schedule`).

    `noise` is unit Gaussian; the loop scales it to the scheduler's initial sigma.
    """
    set_schedule(scheduler, steps, noise.device, schedule_options)
    return integrate(denoiser, scheduler, noise * init_noise_sigma(scheduler), cond, uncond, guidance,
                     range(len(scheduler.timesteps)), generators, keep_x0, on_step)
