"""The sampler registry: a name in params -> a diffusers scheduler and its settings.

The scheduler does the sampling math; a sampler entry only says which scheduler and how it is set up.
Every scheduler is built from the model's own training schedule (`from_config`), so a sampler means
the same thing for a toy checkpoint and for Stable Diffusion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin


@dataclass(frozen=True)
class Sampler:
    scheduler: type[SchedulerMixin]
    settings: dict = field(default_factory=dict)
    stochastic: bool = False  # draws fresh noise at each step (needs per-image generators)
    resumable: bool = False  # a step depends only on (t, x_t): a trajectory may stop and resume anywhere
    description: str = ""


SAMPLERS: dict[str, Sampler] = {
    "ddim": Sampler(DDIMScheduler, {"timestep_spacing": "leading"}, resumable=True, description="DDIM (eta=0), Song et al. 2021"),
    "ddpm": Sampler(DDPMScheduler, {"timestep_spacing": "leading"}, stochastic=True, resumable=True, description="ancestral DDPM, Ho et al. 2020"),
    "dpmsolver++": Sampler(
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "timestep_spacing": "linspace"},
        description="DPM-Solver++(2M), Lu et al. 2022",
    ),
    "euler": Sampler(EulerDiscreteScheduler, {"timestep_spacing": "linspace"}, description="Euler, Karras et al. 2022"),
    "heun": Sampler(
        HeunDiscreteScheduler, {"timestep_spacing": "linspace"}, description="Heun 2nd order (2 NFEs per step but the last)"
    ),
    "euler-ancestral": Sampler(
        EulerAncestralDiscreteScheduler, {"timestep_spacing": "linspace"}, stochastic=True, description="Euler ancestral"
    ),
    "unipc": Sampler(UniPCMultistepScheduler, {"timestep_spacing": "linspace"}, description="UniPC, Zhao et al. 2023"),
}


def make_scheduler(name: str, training_config: dict) -> SchedulerMixin:
    """A fresh scheduler of sampler `name` over the model's training noise schedule."""
    try:
        sampler = SAMPLERS[name]
    except KeyError:
        raise KeyError(f"unknown sampler {name!r}; known: {sorted(SAMPLERS)}") from None
    return sampler.scheduler.from_config(training_config, **sampler.settings)
