"""What every search algorithm shares: its registry entry, the problem it is given, the result it
returns, seeds and scoring.

A search spends extra denoiser evaluations on the same image slot (a prompt and replicate) and keeps
what a verifier likes best. Every trajectory goes through the same `CountingDenoiser`, so the cell's
ledger counts search NFEs exactly as it counts plain sampling ones, and the verifier counts its own cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from diffscale.lazy import lazy_import
from diffscale.registry import Registry
from diffscale.sampling.loop import (
    Conditioning,
    CountingDenoiser,
    denoise,
    gaussian,
    generators_for,
    set_schedule,
    take,
)
from diffscale.seeds import derive_seed

if TYPE_CHECKING:
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

torch = lazy_import("torch")


def no_findings(options: dict, steps: int) -> list[str]:
    return []


@dataclass(frozen=True)
class Algorithm:
    """A search algorithm and everything the rest of the workflow needs to know about it.

    `options` is the JSON schema of each option (with its `default`): the params schema, the defaults and
    the validation errors come from it. `trajectories(steps, budget, options)` is the algorithm's NFE
    formula in units of one trajectory of the cell's sampler: the ledger's check, `diffscale estimate`
    and the tests all use it. `problems(options, steps)` lists settings that cannot run (each message
    starts with the option's name); `warnings(options, steps)` settings that run but do not search.
    """

    name: str
    run: Callable[[SearchProblem, int, dict], SearchResult]
    description: str
    trajectories: Callable[[int, int, dict], float]
    options: dict = field(default_factory=dict)
    needs: str = "any"  # the sampler capability it needs: "any", "resumable" (restarts mid-trajectory), "stochastic"
    whole_trajectories: bool = True  # scores final images only (so verifiers of whole trajectories apply)
    problems: Callable[[dict, int], list[str]] = no_findings
    warnings: Callable[[dict, int], list[str]] = no_findings

    @property
    def defaults(self) -> dict:
        return {name: spec["default"] for name, spec in self.options.items()}

    def schema(self) -> dict:
        return {"type": "object", "additionalProperties": False, "description": self.description,
                "properties": self.options}


ALGORITHMS: Registry[Algorithm] = Registry("search algorithm")


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    return ALGORITHMS.register(algorithm.name, algorithm)


def candidate_seed(image_seed: int, k: int) -> int:
    """Candidate 0 is the no-search image itself; the others are derived, so candidate sets are nested."""
    return image_seed if k == 0 else derive_seed(image_seed, "candidate", k)


@dataclass
class SearchProblem:
    """One batch of image slots to search for, and everything needed to spend NFEs on them."""

    denoiser: CountingDenoiser
    make_scheduler: Callable[[], SchedulerMixin]  # a fresh scheduler of the cell's sampler
    stochastic: bool  # the sampler draws fresh noise per step (per-trajectory generators needed)
    steps: int
    guidance: float
    cond: Conditioning  # one row per slot
    uncond: Conditioning
    seeds: list[int]  # per slot: the no-search image seed
    prompts: list[str]  # per slot
    shape: tuple[int, ...]  # one latent
    decode: Callable[[torch.Tensor], torch.Tensor]  # latents -> images (B, 3, H, W) in [0, 1]
    verifier: object  # a `diffscale.verifiers` Verifier
    chunk: int = 256  # trajectories per denoiser batch
    intermediate_step: int | None = None  # whose x0 a verifier of whole trajectories compares with the result
    schedule_options: dict = field(default_factory=dict)  # the model's extra `set_timesteps` arguments (FLUX: mu)

    @property
    def device(self) -> torch.device:
        return next(iter(self.cond.values())).device if self.cond else torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return self.denoiser.model.dtype


def scheduler_at(problem: SearchProblem, position: int = 0) -> SchedulerMixin:
    """A fresh scheduler of the cell's sampler, its timesteps set, whose next step is at `position`.

    Flow schedulers count their steps instead of reading t, so a trajectory resumed mid-way needs its begin
    index; the schedulers without one read t.
    """
    scheduler = problem.make_scheduler()
    set_schedule(scheduler, problem.steps, problem.device, problem.schedule_options)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(position)
    return scheduler


@dataclass
class SearchResult:
    latents: torch.Tensor  # (B, ...) the chosen final latents per slot
    scores: torch.Tensor  # (B,) the verifier's score of each chosen result
    chosen: list[int]  # per slot: index of the chosen candidate / trajectory / particle
    history: list[dict] = field(default_factory=list)  # per slot: what the search saw, for the records


def trajectories(problem: SearchProblem, noise: torch.Tensor, generators: list[torch.Generator] | None,
                 slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Denoise whole trajectories from unit `noise` (row r belongs to slot `slots[r]`), in chunks.

    Returns the final latents and, when the verifier needs it, each trajectory's x0 prediction at
    `problem.intermediate_step`.
    """
    finals, intermediates = [], []
    for start in range(0, len(noise), problem.chunk):
        rows = slice(start, start + problem.chunk)
        index = slots[rows]
        seen = {}
        on_step = None
        if problem.intermediate_step is not None:
            def on_step(i, latents, x0, seen=seen):
                if i == problem.intermediate_step:
                    seen["x0"] = x0
        trajectory = denoise(
            problem.denoiser, problem.make_scheduler(), noise[rows].to(problem.device, problem.dtype),
            take(problem.cond, index), take(problem.uncond, index), problem.guidance, problem.steps,
            generators=generators[rows] if problem.stochastic else None, on_step=on_step,
            schedule_options=problem.schedule_options,
        )
        finals.append(trajectory.latents)
        if problem.intermediate_step is not None:
            intermediates.append(seen["x0"])
    return torch.cat(finals), (torch.cat(intermediates) if intermediates else None)


def verify(problem: SearchProblem, latents: torch.Tensor, slots: torch.Tensor,
           intermediate: torch.Tensor | None = None) -> torch.Tensor:
    """The verifier's score of each row's decoded latents; candidates of one slot form one group.

    Chunks hold whole groups (a slot's rows are adjacent), so rank-based verifiers see every candidate.
    """
    scores = []
    for rows in _whole_groups(slots, problem.chunk):
        images = problem.decode(latents[rows])
        extra = {"intermediate": problem.decode(intermediate[rows])} if intermediate is not None else {}
        scores.append(problem.verifier.score(images, [problem.prompts[int(s)] for s in slots[rows]],
                                             groups=slots[rows].cpu(), **extra))
    return torch.cat(scores)


def _whole_groups(slots: torch.Tensor, chunk: int) -> list[slice]:
    """Row ranges of about `chunk` rows that never split a run of equal slot ids."""
    starts = [0] + [i for i in range(1, len(slots)) if slots[i] != slots[i - 1]] + [len(slots)]
    ranges, begin = [], 0
    for end in starts[1:]:
        if end - begin >= chunk or end == len(slots):
            ranges.append(slice(begin, end))
            begin = end
    return ranges


def seeded_candidates(problem: SearchProblem, count: int) -> tuple[torch.Tensor, list[torch.Generator], torch.Tensor, list[int]]:
    """`count` nested candidates per slot, adjacent: their noise, generators, slot index and seeds."""
    seeds = [candidate_seed(seed, k) for seed in problem.seeds for k in range(count)]
    generators = generators_for(seeds)
    noise = gaussian(generators, problem.shape)
    slots = torch.arange(len(problem.seeds)).repeat_interleave(count)
    return noise, generators, slots, seeds


def best_per_slot(scores: torch.Tensor, per_slot: int) -> torch.Tensor:
    """Index of the best of each slot's `per_slot` adjacent rows; ties go to the earliest (argmax's rule)."""
    return scores.view(-1, per_slot).argmax(1)
