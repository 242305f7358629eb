"""Feynman-Kac steering (Singhal et al. 2025): sequential Monte Carlo over particles of a stochastic sampler.

K particles per image run a stochastic sampler (DDPM, Euler ancestral, stochastic flow Euler). Every
`interval` steps the verifier scores each particle's x0 prediction r_t and the particles are resampled
(multinomially, within their image) in proportion to a potential G_t:

    difference:  G_t = exp(lambda (r_t - r_prev))       (the product telescopes to exp(lambda r))
    max:         G_t = exp(lambda max(r_t, r_max))

At the end the final images are scored, and the final correction exp(lambda r_0) / prod(G along the
particle's lineage) gives the importance weights of the tilted target p(x) exp(lambda r(x)); they are
recorded, and the result is the particle with the highest final reward (`select: best`, as the paper
reports) or one drawn by those weights (`select: sample`). K counts particles:

    NFE per image = K x NFE(one trajectory)
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.sampling.loop import integrate, take
from diffscale.sampling.samplers import init_noise_sigma
from diffscale.search.base import (
    Algorithm,
    SearchProblem,
    SearchResult,
    generators_for,
    register_algorithm,
    scheduler_at,
    seeded_candidates,
    verify,
)
from diffscale.seeds import derive_seed

torch = lazy_import("torch")


def log_potential(kind: str, lam: float, rewards: torch.Tensor, state: dict) -> torch.Tensor:
    """log G_t for each particle; `state` carries r_prev / r_max along each particle's lineage."""
    if kind == "difference":
        log_g = lam * (rewards - state.get("previous", torch.zeros_like(rewards)))
        state["previous"] = rewards
    elif kind == "max":
        running = torch.maximum(rewards, state.get("max", torch.full_like(rewards, -torch.inf)))
        log_g, state["max"] = lam * running, running
    else:
        raise ValueError(f"unknown potential {kind!r}; known: ['difference', 'max']")
    return log_g


def resampling_weights(log_g: torch.Tensor, particles: int) -> torch.Tensor:
    """Normalised weights per image: a softmax of log G over each image's `particles` adjacent rows."""
    return log_g.view(-1, particles).softmax(dim=1)


def resample(weights: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """Multinomial resampling: for each image, `particles` ancestor indices drawn with its `weights` row.

    One generator per image, so an image's particles do not depend on the batch it is in.
    """
    return torch.stack([torch.multinomial(w, len(w), replacement=True, generator=g) for w, g in zip(weights, generators)])


def search(problem: SearchProblem, budget: int, options: dict) -> SearchResult:
    lam, kind, interval = options["lambda"], options["potential"], options["interval"]
    scheduler = scheduler_at(problem)  # one for all intervals: they follow each other, as the scheduler counts them
    noise, generators, slots, _ = seeded_candidates(problem, budget)
    latents = noise.to(problem.device, problem.dtype) * init_noise_sigma(scheduler)
    n_slots, state = len(problem.seeds), {}
    log_lineage = torch.zeros(len(latents))
    resamplers = generators_for([derive_seed(seed, "fk-steering") for seed in problem.seeds])
    history = [{"ess": []} for _ in range(n_slots)]
    offsets = budget * torch.arange(n_slots)[:, None]
    for begin in range(0, problem.steps, interval):
        end = min(begin + interval, problem.steps)
        last = {}
        latents = integrate(problem.denoiser, scheduler, latents, take(problem.cond, slots), take(problem.uncond, slots),
                            problem.guidance, range(begin, end), generators if problem.stochastic else None,
                            on_step=lambda i, x, x0, last=last: last.update(x0=x0)).latents
        if end == problem.steps:
            break
        log_g = log_potential(kind, lam, verify(problem, last["x0"], slots), state)
        weights = resampling_weights(log_g, budget)
        for s, w in enumerate(weights):
            history[s]["ess"].append(float(1 / (w**2).sum()))
        ancestors = (resample(weights, resamplers) + offsets).flatten()
        latents, log_lineage = latents[ancestors], log_lineage[ancestors] + log_g[ancestors]
        state = {key: value[ancestors] for key, value in state.items()}
    rewards = verify(problem, latents, slots)
    final = resampling_weights(lam * rewards - log_lineage, budget)  # the final correction
    per_slot = rewards.view(n_slots, budget)
    if options["select"] == "best":
        chosen = per_slot.argmax(1)
    else:
        chosen = resample(final, resamplers)[:, 0]
    rows = (chosen + offsets[:, 0])
    for s in range(n_slots):
        history[s] |= {"final_rewards": per_slot[s].tolist(), "final_weights": final[s].tolist()}
    return SearchResult(latents[rows], rewards[rows], chosen.tolist(), history)


def warnings(options: dict, steps: int) -> list[str]:
    if options["interval"] >= steps:
        return [f"interval: {options['interval']} >= {steps} steps: particles are never resampled, so FK steering "
                "is best-of-K there"]
    return []


register_algorithm(Algorithm(
    name="fk-steering", run=search, description="Feynman-Kac steering: SMC with potentials on x0 predictions",
    trajectories=lambda steps, budget, options: float(budget), needs="stochastic", whole_trajectories=False,
    warnings=warnings,
    options={
        "lambda": {"type": "number", "minimum": 0, "default": 10.0, "description": "Tilt: the target is p(x) exp(lambda r(x))."},
        "potential": {"type": "string", "enum": ["difference", "max"], "default": "difference",
                      "description": "G_t = exp(lambda (r_t - r_prev)) or exp(lambda max(r_t, r_max))."},
        "interval": {"type": "integer", "minimum": 1, "default": 2, "description": "Steps between resamplings."},
        "select": {"type": "string", "enum": ["best", "sample"], "default": "best",
                   "description": "The result: the particle with the best final reward, or one drawn by the final weights."},
    },
))
