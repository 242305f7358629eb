"""ensemble: Ma et al.'s Verifier Ensemble, the unweighted mean of each member's rank.

Ranks are taken within a group (the candidates of one image slot): 0 for the worst, ties share the
mean of their ranks, divided by (group size - 1) so every group spans [0, 1] whatever its size (a
group of one gets 0.5). Members' scales never mix, only their orders.
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.verifiers.base import BATCH_SIZE_OPTION, Verifier, VerifierCost, check_inputs, register

torch = lazy_import("torch")


def prompt_groups(prompts: list[str]) -> torch.Tensor:
    """One group per distinct prompt string, numbered in order of first appearance."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(p, len(ids)) for p in prompts], dtype=torch.long)


def group_ranks(scores: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Each score's rank within its group in [0, 1] (0 = worst), ties averaged; NaN counts as worst."""
    scores = torch.nan_to_num(scores.double(), nan=-torch.inf)
    ranks = torch.empty_like(scores)
    for group in torch.unique(groups):
        idx = (groups == group).nonzero(as_tuple=True)[0]
        s = scores[idx]
        below = (s[None, :] < s[:, None]).sum(1).double()
        ties = (s[None, :] == s[:, None]).sum(1).double()
        rank = below + (ties - 1) / 2
        ranks[idx] = rank / (len(idx) - 1) if len(idx) > 1 else torch.full_like(rank, 0.5)
    return ranks


@register("ensemble")
class EnsembleVerifier(Verifier):
    """Ma et al.'s Verifier Ensemble: the mean of its members' ranks within each group of candidates.

    Options: `members` (names of other verifiers of the study).

    Cost: `ensemble.cost` is the sum of what its members spent on its behalf (every member's call,
    images and GFLOPs); the members' own counters only count calls made to them directly, so a
    ledger may add an ensemble and its members without counting anything twice.
    """

    options = {**BATCH_SIZE_OPTION, "members": {"type": "array", "minItems": 2, "uniqueItems": True, "items": {"type": "string"},
                                                "description": "Names of other verifiers of the study."}}
    required = ("members",)

    def __init__(self, members: dict[str, Verifier], *, device="cpu", batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if not members:
            raise ValueError("ensemble: `members` must name at least one verifier")
        self.members = dict(members)
        levels = {m.intermediate_level for m in self.members.values()} - {None}
        if len(levels) > 1:
            raise ValueError(f"ensemble: members compare x0 predictions at different levels {sorted(levels)}")
        self.intermediate_level = levels.pop() if levels else None

    @classmethod
    def from_spec(cls, options, resources, device, built):
        options = dict(options)
        names = options.pop("members", None) or []
        return cls({name: built[name] for name in names}, device=device, **options)

    @classmethod
    def members(cls, options: dict) -> list[str]:
        return list(options.get("members", []))

    def _score(self, images, prompts, groups, intermediate, ledger: VerifierCost) -> torch.Tensor:
        check_inputs(self, images, prompts, groups, intermediate)
        groups = prompt_groups(list(prompts)) if groups is None else groups.cpu()
        ranks = [group_ranks(m._score(images, prompts, groups, intermediate, ledger), groups) for m in self.members.values()]
        return torch.stack(ranks).mean(0).float()

    def gflops_per_image(self, images, prompts, intermediate=None) -> float:
        return sum(m.gflops_per_image(images, prompts, intermediate) for m in self.members.values())
