"""Random search (best-of-N), Ma et al. 2025: draw N starting noises per image, keep the verifier's favourite.

Candidate k starts from seed(image, k), with candidate 0 the no-search image's own seed. The candidate
sets are therefore nested: budget N contains budget M < N, a budget of 1 reproduces the no-search cell
image for image, and the scores of one cell's N candidates give its whole anytime curve (best of the
first n, for every n <= N).

    NFE per image = N x NFE(one trajectory)
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.search.base import (
    Algorithm,
    SearchProblem,
    SearchResult,
    best_per_slot,
    register_algorithm,
    seeded_candidates,
    trajectories,
    verify,
)

torch = lazy_import("torch")


def search(problem: SearchProblem, budget: int, options: dict) -> SearchResult:
    noise, generators, slots, seeds = seeded_candidates(problem, budget)
    latents, intermediate = trajectories(problem, noise, generators, slots)
    scores = verify(problem, latents, slots, intermediate)
    best = best_per_slot(scores, budget)
    rows = best + budget * torch.arange(len(problem.seeds))
    per_slot = scores.view(-1, budget)
    return SearchResult(
        latents=latents[rows], scores=scores[rows], chosen=best.tolist(),
        history=[{"candidate_scores": row.tolist(), "seed": seeds[r]} for row, r in zip(per_slot, rows.tolist())],
    )


register_algorithm(Algorithm(
    name="random", run=search, description="best-of-N over starting noises (nested seeds)",
    trajectories=lambda steps, budget, options: float(budget),
))
