"""Inference-time search: spend NFEs on finding better noises or paths, judged by a verifier.

One registry, one short module per algorithm. Each takes a `SearchProblem` (a batch of image slots),
a budget and its options, and returns a `SearchResult`; the NFE formula of each is in its docstring
and checked by tests that count denoiser calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from diffscale.search import best_of_n, fk_steering, paths, zero_order
from diffscale.search.base import SearchProblem, SearchResult, candidate_seed


@dataclass(frozen=True)
class Algorithm:
    run: Callable[[SearchProblem, int, dict], SearchResult]
    description: str
    needs: str = "any"  # "any", "resumable" (restarts mid-trajectory) or "stochastic" (SMC needs fresh noise)
    whole_trajectories: bool = True  # scores final images only (so self-consistency verifiers apply)


ALGORITHMS: dict[str, Algorithm] = {
    "random": Algorithm(best_of_n.search, "best-of-N over starting noises (nested seeds)"),
    "zero-order": Algorithm(zero_order.search, "hill-climbing over neighbours of a pivot noise"),
    "paths": Algorithm(paths.search, "search over paths: branch, re-noise and prune partial trajectories",
                       needs="resumable", whole_trajectories=False),
    "fk-steering": Algorithm(fk_steering.search, "Feynman-Kac steering: SMC with potentials on x0 predictions",
                             needs="stochastic", whole_trajectories=False),
}

__all__ = ["ALGORITHMS", "Algorithm", "SearchProblem", "SearchResult", "candidate_seed"]
