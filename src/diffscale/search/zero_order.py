"""Zero-order search, Ma et al. 2025: hill-climb in noise space around a pivot, guided by the verifier.

Start from the no-search noise n as the pivot and score it. Each iteration draws K neighbours

    n' = sqrt(1 - r^2) n + r eps,   eps ~ N(0, I),

which stay unit Gaussian (r in (0, 1] is the radius; r = 1 is a fresh draw, i.e. random search), denoises
them, and moves the pivot to the best neighbour if it beats the pivot. When none does, `restart: keep`
keeps the pivot and draws new neighbours, `restart: fresh` starts again from a fresh random pivot.
The result is the best trajectory seen. The budget N counts whole trajectories (the pivot is the first):

    NFE per image = N x NFE(one trajectory)
"""

from __future__ import annotations

import math

from diffscale.lazy import lazy_import
from diffscale.search.base import (
    Algorithm,
    SearchProblem,
    SearchResult,
    best_per_slot,
    gaussian,
    generators_for,
    register_algorithm,
    seeded_candidates,
    trajectories,
    verify,
)
from diffscale.seeds import derive_seed

torch = lazy_import("torch")


def search(problem: SearchProblem, budget: int, options: dict) -> SearchResult:
    radius, neighbours, restart = options["radius"], options["neighbours"], options["restart"]
    pivot, generators, slots, _ = seeded_candidates(problem, 1)
    latents, intermediate = trajectories(problem, pivot, generators, slots)
    pivot_score = verify(problem, latents, slots, intermediate)
    best_latents, best_score = latents.clone(), pivot_score.clone()
    chosen = [0] * len(slots)
    history = [{"scores": [float(s)]} for s in pivot_score]
    used, iteration = 1, 0
    while used < budget:
        k = min(neighbours, budget - used)
        seeds = [derive_seed(seed, "zero-order", iteration, j) for seed in problem.seeds for j in range(k)]
        generators = generators_for(seeds)
        around = slots.repeat_interleave(k)
        candidates = math.sqrt(1 - radius**2) * pivot[around] + radius * gaussian(generators, problem.shape)
        latents, intermediate = trajectories(problem, candidates, generators, around)
        scores = verify(problem, latents, around, intermediate)
        best = best_per_slot(scores, k)
        rows = best + k * slots
        for s in range(len(slots)):
            history[s]["scores"] += scores[k * s : k * (s + 1)].tolist()
            if scores[rows[s]] > best_score[s]:
                best_latents[s], best_score[s], chosen[s] = latents[rows[s]], scores[rows[s]], used + int(best[s])
        improved = scores[rows] > pivot_score
        pivot[improved], pivot_score[improved] = candidates[rows][improved], scores[rows][improved]
        if restart == "fresh" and not improved.all():
            stuck = (~improved).nonzero()[:, 0]
            fresh = gaussian(generators_for([derive_seed(problem.seeds[s], "restart", iteration) for s in stuck.tolist()]), problem.shape)
            pivot[stuck], pivot_score[stuck] = fresh, -torch.inf  # a fresh pivot is judged by its neighbours
        used, iteration = used + k, iteration + 1
    return SearchResult(best_latents, best_score, chosen, history)


register_algorithm(Algorithm(
    name="zero-order", run=search, description="hill-climbing over neighbours of a pivot noise",
    trajectories=lambda steps, budget, options: float(budget),
    options={
        "radius": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 0.5,
                   "description": "Neighbour n' = sqrt(1 - r^2) n + r eps; r = 1 is random search."},
        "neighbours": {"type": "integer", "minimum": 1, "default": 3, "description": "Neighbours per iteration."},
        "restart": {"type": "string", "enum": ["keep", "fresh"], "default": "keep",
                    "description": "When no neighbour beats the pivot: keep it, or start from a fresh noise."},
    },
))
