"""The sampler registry: a name in params -> a diffusers scheduler, its settings and what it costs.

The scheduler does the sampling math; a sampler entry says which scheduler, how it is set up, how many
denoiser evaluations a schedule of `steps` costs, and what search may do with it. Every scheduler is
built from the model's own training schedule (`from_config`), so a sampler means the same thing for a
toy checkpoint and for Stable Diffusion. Add a sampler with one `register_sampler(Sampler(...))` call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from diffscale.lazy import lazy_import
from diffscale.registry import Registry

diffusers = lazy_import("diffusers")


def one_per_step(steps: int) -> int:
    return steps


@dataclass(frozen=True)
class Sampler:
    name: str
    scheduler: str  # the diffusers scheduler class
    description: str
    settings: dict = field(default_factory=dict)  # passed to `from_config` over the model's training schedule
    evaluations: Callable[[int], int] = one_per_step  # denoiser evaluations of one trajectory of `steps` steps
    stochastic: bool = False  # draws fresh noise at each step (needs per-image generators)
    resumable: bool = False  # a step depends only on (t, x_t): a trajectory may stop and resume anywhere

    def make(self, training_config: dict):
        """A fresh scheduler over the model's training noise schedule."""
        return getattr(diffusers, self.scheduler).from_config(training_config, **self.settings)


SAMPLERS: Registry[Sampler] = Registry("sampler")


def register_sampler(sampler: Sampler) -> Sampler:
    return SAMPLERS.register(sampler.name, sampler)


def make_scheduler(name: str, training_config: dict):
    """A fresh scheduler of sampler `name` over the model's training noise schedule."""
    return SAMPLERS[name].make(training_config)


register_sampler(Sampler("ddim", "DDIMScheduler", "DDIM (eta=0), Song et al. 2021", {"timestep_spacing": "leading"},
                         resumable=True))
register_sampler(Sampler("ddpm", "DDPMScheduler", "ancestral DDPM, Ho et al. 2020", {"timestep_spacing": "leading"},
                         stochastic=True, resumable=True))
register_sampler(Sampler("dpmsolver++", "DPMSolverMultistepScheduler", "DPM-Solver++(2M), Lu et al. 2022",
                         {"algorithm_type": "dpmsolver++", "solver_order": 2, "timestep_spacing": "linspace"}))
register_sampler(Sampler("euler", "EulerDiscreteScheduler", "Euler, Karras et al. 2022", {"timestep_spacing": "linspace"}))
# Heun evaluates twice per step, except on the last step, which is a plain Euler step to sigma = 0.
register_sampler(Sampler("heun", "HeunDiscreteScheduler", "Heun 2nd order (2 NFEs per step but the last)",
                         {"timestep_spacing": "linspace"}, evaluations=lambda steps: 2 * steps - 1))
register_sampler(Sampler("euler-ancestral", "EulerAncestralDiscreteScheduler", "Euler ancestral",
                         {"timestep_spacing": "linspace"}, stochastic=True))
register_sampler(Sampler("unipc", "UniPCMultistepScheduler", "UniPC, Zhao et al. 2023", {"timestep_spacing": "linspace"}))
