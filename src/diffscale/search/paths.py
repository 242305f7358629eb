"""Search over paths, Ma et al. 2025: branch partially denoised trajectories and keep the best ones.

N paths are denoised from their starting noise up to step s0 = round(start x steps). Then, round after
round, each kept path at step i is copied M times, every copy is pushed back f steps with the forward
noising kernel of the model's own noise schedule, t' = timesteps[i - f] > t. Both kinds of model noise as
x_t = s_t x0 + n_t eps (diffusion: s = sqrt(abar), n = sqrt(1 - abar); rectified flow: s = 1 - sigma,
n = sigma, sigma from the scheduler's `sigmas`), and the Gaussian Markov kernel with those marginals is

    x_{t'} = (s_t' / s_t) x_t + sqrt(n_t'^2 - (s_t' / s_t)^2 n_t^2) eps:

its mean is s_t' x0 and its variance n_t'^2. For diffusion that is sqrt(abar_t' / abar_t) x_t +
sqrt(1 - abar_t' / abar_t) eps; for flow, from sigma = 0, it is the scheduler's own `scale_noise`. Each copy
is then integrated b > f steps forward again (a net advance of b - f). The verifier scores each copy's x0
prediction; the best N of the N x M copies of a slot survive. The last round reaches the end of the
schedule and the verifier's favourite final image is the result. Resuming mid-trajectory needs a
scheduler whose step depends only on (t, x_t): DDIM, DDPM, flow Euler (stochastic or not).

    NFE per image = N s0 + N M sum over rounds of (end_r - (i_r - f)),   times 2 with CFG
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.sampling.loop import integrate, take
from diffscale.sampling.samplers import init_noise_sigma, scheduler_kind
from diffscale.search.base import (
    Algorithm,
    SearchProblem,
    SearchResult,
    gaussian,
    generators_for,
    register_algorithm,
    scheduler_at,
    seeded_candidates,
    verify,
)
from diffscale.seeds import derive_seed

torch = lazy_import("torch")


def rounds(steps: int, start: float, forward: int, backward: int) -> tuple[int, list[tuple[int, int]]]:
    """s0 and the (from, to) step positions of every branching round."""
    if backward <= forward:
        raise ValueError(f"paths search needs backward > forward (each round advances backward - forward steps); "
                         f"got forward={forward}, backward={backward}")
    first = position = min(steps, max(forward, round(start * steps)))
    spans = []
    while position < steps:
        begin = position - forward
        end = min(begin + backward, steps)
        spans.append((begin, end))
        position = end
    return first, spans


def scales(scheduler, position: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(s_t, n_t) at step `position`: x_t = s_t x0 + n_t eps on the scheduler's schedule (see above)."""
    if scheduler_kind(scheduler) == "flow":
        sigma = scheduler.sigmas[position].double()
        return 1 - sigma, sigma
    abar = scheduler.alphas_cumprod[int(scheduler.timesteps[position])].double()
    return abar.sqrt(), (1 - abar).sqrt()


def forward_kernel(scheduler, position: int, back_to: int) -> tuple[float, float]:
    """(a, b) with x_{t'} = a x_t + b eps taking step `position` back to the noisier step `back_to`."""
    signal, noise = scales(scheduler, position)
    signal_back, noise_back = scales(scheduler, back_to)
    a = signal_back / signal
    return float(a), float((noise_back**2 - a**2 * noise**2).clamp(min=0).sqrt())


def _integrate(problem, latents, slots, indices, generators, keep_last_x0):
    last = {}
    trajectory = integrate(problem.denoiser, scheduler_at(problem, indices.start), latents, take(problem.cond, slots),
                           take(problem.uncond, slots), problem.guidance, indices, generators if problem.stochastic else None,
                           on_step=(lambda i, x, x0: last.update(x0=x0)) if keep_last_x0 else None)
    return trajectory.latents, last.get("x0")


def search(problem: SearchProblem, budget: int, options: dict) -> SearchResult:
    copies, forward, backward = options["copies"], options["forward"], options["backward"]
    start, spans = rounds(problem.steps, options["start"], forward, backward)
    schedule = scheduler_at(problem)  # read for its noise levels; each integration gets a fresh one
    noise, generators, slots, _ = seeded_candidates(problem, budget)
    latents = noise.to(problem.device, problem.dtype) * init_noise_sigma(schedule)
    latents, _ = _integrate(problem, latents, slots, range(start), generators, False)
    n_slots = len(problem.seeds)
    history = [{"round_best": []} for _ in range(n_slots)]
    position = start
    for r, (begin, end) in enumerate(spans):
        # Branch: M noised copies of every kept path, each with its own generator.
        rows = torch.arange(len(latents)).repeat_interleave(copies)
        copy_slots = slots[rows]
        per_slot = budget * copies  # a slot's copies are adjacent; seeds index them within their slot
        seeds = [derive_seed(problem.seeds[int(s)], "paths", r, j % per_slot) for j, s in enumerate(copy_slots.tolist())]
        generators = generators_for(seeds)
        a, b = forward_kernel(schedule, position, begin)
        eps = gaussian(generators, problem.shape).to(problem.device, problem.dtype)
        branched = a * latents[rows] + b * eps
        branched, x0 = _integrate(problem, branched, copy_slots, range(begin, end), generators, end < problem.steps)
        scores = verify(problem, x0 if end < problem.steps else branched, copy_slots)
        keep = 1 if end == problem.steps else budget
        top = scores.view(n_slots, per_slot).topk(keep, dim=1)
        chosen_rows = (top.indices + per_slot * torch.arange(n_slots)[:, None]).flatten()
        for s in range(n_slots):
            history[s]["round_best"].append(float(top.values[s, 0]))
        latents, slots, position = branched[chosen_rows], copy_slots[chosen_rows], end
    if not spans:  # no room to branch: plain best-of-N on the final images
        scores = verify(problem, latents, slots)
        top = scores.view(n_slots, budget).topk(1, dim=1)
        latents = latents[(top.indices + budget * torch.arange(n_slots)[:, None]).flatten()]
    return SearchResult(latents, top.values[:, 0], top.indices[:, 0].tolist(), history)


def trajectory_units(steps: int, budget: int, options: dict) -> float:
    """The NFE formula above in units of one trajectory of `steps` evaluations."""
    start, spans = rounds(steps, options["start"], options["forward"], options["backward"])
    return budget * (start + options["copies"] * sum(end - begin for begin, end in spans)) / steps


def problems(options: dict, steps: int) -> list[str]:
    if options["backward"] <= options["forward"]:
        return [f"backward: must exceed forward (each round advances backward - forward steps, so it would never "
                f"finish); got forward={options['forward']}, backward={options['backward']}"]
    return []


def warnings(options: dict, steps: int) -> list[str]:
    start, spans = rounds(steps, options["start"], options["forward"], options["backward"])
    if not spans:
        return [f"start: {options['start']} of {steps} steps leaves no step to branch at: paths search is best-of-N there"]
    return []


register_algorithm(Algorithm(
    name="paths", run=search, description="search over paths: branch, re-noise and prune partial trajectories",
    trajectories=trajectory_units, needs="resumable", whole_trajectories=False, problems=problems, warnings=warnings,
    options={
        "copies": {"type": "integer", "minimum": 1, "default": 2, "description": "M: noised copies of each kept path per round."},
        "start": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                  "description": "Fraction of the steps before the first branching."},
        "forward": {"type": "integer", "minimum": 1, "default": 1, "description": "f: steps re-noised per round."},
        "backward": {"type": "integer", "minimum": 2, "default": 2,
                     "description": "b: steps integrated per round (b > f; a round advances b - f)."},
    },
))
