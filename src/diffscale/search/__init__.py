"""Inference-time search: spend NFEs on finding better noises or paths, judged by a verifier.

One registry (`ALGORITHMS`), one short module per algorithm that registers itself. Each takes a
`SearchProblem` (a batch of image slots), a budget and its options, and returns a `SearchResult`; the
NFE formula of each is in its docstring and in its registry entry, checked by tests that count denoiser
calls.
"""

# Each module registers itself; this order is the order the schema and the report list them in.
from diffscale.search import best_of_n, zero_order, paths, fk_steering  # noqa: F401,I001
from diffscale.search.base import ALGORITHMS, Algorithm, SearchProblem, SearchResult, candidate_seed, register_algorithm

__all__ = ["ALGORITHMS", "Algorithm", "SearchProblem", "SearchResult", "candidate_seed", "register_algorithm"]
