"""The sampler registry: a name in params -> a diffusers scheduler, its settings and what it costs.

The scheduler does the sampling math; a sampler entry says which scheduler, how it is set up, how many
denoiser evaluations a schedule of `steps` costs, and what search may do with it. Every scheduler is
built from the model's own training schedule (`from_config`), so a sampler means the same thing for a
toy checkpoint and for Stable Diffusion. Add a sampler with one `register_sampler(Sampler(...))` call.

A sampler serves one kind of model, read from the model's scheduler config (`model_kind`): "diffusion"
(a noise schedule x_t = alpha_t x0 + sigma_t eps, epsilon / v / sample prediction) or "flow" (rectified flow
x_t = (1 - sigma) x0 + sigma eps, velocity prediction: FLUX, SD3). Their schedulers are not interchangeable,
so a sampler of the other kind is refused by name rather than run on the wrong parameterisation. A
consistency-distilled model (LCM) is a diffusion model whose network is a consistency function; only a
consistency sampler (`lcm`) reads it as one, which validation checks where the study says what a model is.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field

from diffscale.lazy import lazy_import
from diffscale.registry import Registry

diffusers = lazy_import("diffusers")


MODEL_KINDS = ("diffusion", "flow")

# Schedule options that change the noise levels; a sampler whose scheduler lacks one the model sets would silently
# sample another schedule (FlowMatchHeun has no dynamic shifting, which FLUX uses; HeunDiscrete cannot rescale
# betas to zero terminal SNR, which the toy diffusion ladder is trained with).
SCHEDULE_OPTIONS = ("use_dynamic_shifting", "shift_terminal", "invert_sigmas", "use_karras_sigmas",
                    "use_exponential_sigmas", "use_beta_sigmas", "rescale_betas_zero_snr")


def one_per_step(steps: int) -> int:
    return steps


def model_kind(training_config: dict) -> str:
    """The model's kind, "flow" or "diffusion": the scheduler class its config names (FlowMatch...), else the
    flow schedulers' own keys (`shift`, `use_dynamic_shifting`; diffusion solvers call theirs `flow_shift`)."""
    name = training_config.get("_class_name")
    if name:
        return "flow" if name.startswith("FlowMatch") else "diffusion"
    return "flow" if "shift" in training_config or training_config.get("use_dynamic_shifting") else "diffusion"


def scheduler_kind(scheduler) -> str:
    """The kind of model a built scheduler integrates (its class, not its config: `from_config` keeps unknown keys)."""
    return model_kind({"_class_name": type(scheduler).__name__})


def init_noise_sigma(scheduler) -> float:
    """The scale of the unit noise a trajectory starts from: diffusion schedulers say it; a flow trajectory
    starts at x = eps (sigma_max = 1), as diffusers' flow pipelines start it."""
    return scheduler.init_noise_sigma if scheduler_kind(scheduler) == "diffusion" else 1.0


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler: str  # the diffusers scheduler class
    description: str
    settings: dict = field(default_factory=dict)  # passed to `from_config` over the model's training schedule
    evaluations: Callable[[int], int] = one_per_step  # denoiser evaluations of one trajectory of `steps` steps
    stochastic: bool = False  # draws fresh noise at each step (needs per-image generators)
    resumable: bool = False  # a step depends only on (t, x_t): a trajectory may stop and resume anywhere
    serves: str = "diffusion"  # the model kind it samples (`MODEL_KINDS`, see `model_kind`)
    consistency: bool = False  # samples consistency-distilled models (LCM), and only those

    def scheduler_class(self) -> type:
        return getattr(diffusers, self.scheduler)

    def make(self, training_config: dict):
        """A fresh scheduler over the model's training noise schedule (refused for a model of another kind)."""
        kind = model_kind(training_config)
        name = training_config.get("_class_name") or "(class not recorded in its config)"
        if kind != self.serves:
            fits = [n for n, s in SAMPLERS.items() if s.serves == kind]
            raise ValueError(f"sampler {self.name!r} serves {self.serves} models, but the model's scheduler {name} is a "
                             f"{kind} one; samplers that fit it: {fits}")
        cls = self.scheduler_class()
        known = inspect.signature(cls.__init__).parameters
        lost = [key for key in SCHEDULE_OPTIONS if training_config.get(key) and key not in known]
        if lost:
            fits = [n for n, s in SAMPLERS.items() if s.serves == kind and s.scheduler != self.scheduler]
            raise ValueError(f"sampler {self.name!r}: {self.scheduler} has no {lost}, which the model's scheduler {name} "
                             f"sets; samplers that keep its schedule: {fits}")
        return cls.from_config(training_config, **self.settings)


SAMPLERS: Registry[Sampler] = Registry("sampler")


def register_sampler(sampler: Sampler) -> Sampler:
    return SAMPLERS.register(sampler.name, sampler)


def make_scheduler(name: str, training_config: dict):
    """A fresh scheduler of sampler `name` over the model's training noise schedule."""
    return SAMPLERS[name].make(training_config)


def with_spacing(sampler: Sampler, spacing: str) -> Sampler:
    """`sampler` with its timesteps placed by `spacing` whatever the model's config says: `<name>-<spacing>`."""
    return dataclasses.replace(sampler, name=f"{sampler.name}-{spacing}", description=f"{sampler.description}, {spacing} timesteps",
                               settings=sampler.settings | {"timestep_spacing": spacing})


def refuse_blind_start(scheduler, sampler: str, steps: int) -> None:
    """Refuse a schedule (set for `steps`) whose first evaluation is in the lower half of the training timesteps.

    A trajectory starts from pure noise, but the denoiser reads its input at the step's timestep: a first step at
    t = 1 (leading spacing at one step) asks it to clean an image it believes almost clean, and it returns the
    noise coloured. Flow schedules start at sigma = 1 by construction.
    """
    if scheduler_kind(scheduler) != "diffusion":
        return
    first, horizon = float(scheduler.timesteps[0]), scheduler.config.num_train_timesteps
    if first < horizon / 2:
        spacing = scheduler.config.get("timestep_spacing", "(the scheduler's default)")
        raise ValueError(
            f"sampler {sampler!r} at {steps} step(s) starts from pure noise but first evaluates the denoiser at "
            f"t = {first:g} of {horizon} ({spacing} spacing: timesteps {[round(float(t)) for t in scheduler.timesteps]}); "
            f"use a trailing sampler (first step at t = {horizon - 1}: {sorted(n for n in SAMPLERS if n.endswith('-trailing'))}) "
            "or more steps")


# The diffusion samplers place their timesteps as the model's scheduler config says (`timestep_spacing`; a config
# without it gets the scheduler class's default: leading for DDIM and DDPM, linspace for the others, as diffusers'
# pipelines do). A `-leading` / `-trailing` variant declares the spacing instead (`with_spacing`).
register_sampler(Sampler("ddim", "DDIMScheduler", "DDIM (eta=0), Song et al. 2021", resumable=True))
register_sampler(Sampler("ddpm", "DDPMScheduler", "ancestral DDPM, Ho et al. 2020", stochastic=True, resumable=True))
register_sampler(Sampler("dpmsolver++", "DPMSolverMultistepScheduler", "DPM-Solver++(2M), Lu et al. 2022",
                         {"algorithm_type": "dpmsolver++", "solver_order": 2}))
register_sampler(Sampler("euler", "EulerDiscreteScheduler", "Euler, Karras et al. 2022"))
# Heun evaluates twice per step, except on the last step, which is a plain Euler step to sigma = 0.
register_sampler(Sampler("heun", "HeunDiscreteScheduler", "Heun 2nd order (2 NFEs per step but the last)",
                         evaluations=lambda steps: 2 * steps - 1))
register_sampler(Sampler("euler-ancestral", "EulerAncestralDiscreteScheduler", "Euler ancestral", stochastic=True))
register_sampler(Sampler("unipc", "UniPCMultistepScheduler", "UniPC, Zhao et al. 2023"))
# Leading spacing (Stable Diffusion's DDIM and DDPM) puts a few-step schedule's first step far below t = T - 1;
# trailing starts at T - 1, where the sampler's pure noise is (Lin et al. 2024, who prescribe it with zero terminal
# SNR). Few-step distilled models ship trailing: SD-Turbo with Euler, SDXL-Turbo with Euler ancestral.
for _base in ("ddim", "ddpm"):
    register_sampler(with_spacing(SAMPLERS[_base], "leading"))
for _base in ("ddim", "ddpm", "euler", "euler-ancestral"):
    register_sampler(with_spacing(SAMPLERS[_base], "trailing"))

# Flow matching: the model's own shift / dynamic shifting come with its config (FLUX passes `mu` through
# `set_schedule`). An Euler step reads only sigma_i, sigma_i+1 and x_t, so a trajectory resumes anywhere.
register_sampler(Sampler("flow-euler", "FlowMatchEulerDiscreteScheduler", "flow-matching Euler (FLUX, SD3)",
                         {"stochastic_sampling": False}, resumable=True, serves="flow"))
# Like Heun above: two evaluations per step but the last, a plain Euler step to sigma = 0 (counted in the tests).
register_sampler(Sampler("flow-heun", "FlowMatchHeunDiscreteScheduler", "flow-matching Heun 2nd order",
                         evaluations=lambda steps: 2 * steps - 1, serves="flow"))
# diffusers' stochastic option: x_{i+1} = (1 - sigma_i+1) x0_hat + sigma_i+1 eps, fresh eps from the per-image
# generators, i.e. the step re-noises the x0 prediction with the flow's forward marginal.
register_sampler(Sampler("flow-euler-stochastic", "FlowMatchEulerDiscreteScheduler",
                         "flow-matching Euler, re-noising x0 with fresh noise each step", {"stochastic_sampling": True},
                         stochastic=True, resumable=True, serves="flow"))

# Latent consistency models (Luo et al. 2023): each step maps x_t to the consistency function's x0 and, but on the
# last step, re-noises it to the next timestep of LCM's skipping grid with fresh noise (per-image generators). The
# scheduler counts its steps, and the step also depends on the step's position, so a trajectory does not resume.
register_sampler(Sampler("lcm", "LCMScheduler", "multistep latent consistency sampling, Luo et al. 2023",
                         stochastic=True, consistency=True))
