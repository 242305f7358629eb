"""Verifiers: one interface (`Verifier.score(images, prompts) -> (B,)`), one registry of kinds.

Kinds: oracle (toy), clip-score, self-consistency, aesthetic, hps, classifier (ImageNet class
probability, for class-conditional models), ensemble. ImageReward is not
registered: `image-reward` 1.5 pins timm==0.6.13 (open_clip_torch 3.x needs timm>=1.0.17, so pip
would downgrade open_clip) and its BLIP code imports `apply_chunking_to_forward`,
`find_pruneable_heads_and_indices` and `prune_linear_layer` from `transformers.modeling_utils`,
which transformers 5 no longer has.
"""

from diffscale.verifiers.base import (
    VERIFIERS,
    Verifier,
    VerifierCost,
    VerifierResources,
    build_verifiers,
    register,
)

# Importing the modules registers their kinds.
from diffscale.verifiers import aesthetic, classifier, clipscore, ensemble, hps, oracle, self_consistency  # noqa: E402,F401


def study_verifiers(params: dict, paths, names: list[str], device) -> dict:
    """The named verifiers of a study (`paths`: its `cells.Paths`), with the ensemble members they need and
    the toy world's oracle and CLIP where the study uses it."""
    from diffscale.cells import uses_toyworld
    from diffscale.models.zoo import pick_device

    wanted, specs = list(names), {}
    while wanted:
        name = wanted.pop()
        specs[name] = params["verifiers"][name]
        wanted += [m for m in specs[name].get("members", []) if m not in specs]
    toy = uses_toyworld(params)
    resources = VerifierResources(oracle=paths.component("oracle") if toy else None, clip=paths.component("clip") if toy else None)
    built = build_verifiers(specs, resources, pick_device(device) if isinstance(device, str) else device)
    return {name: built[name] for name in names}


__all__ = ["VERIFIERS", "Verifier", "VerifierCost", "VerifierResources", "build_verifiers", "register", "study_verifiers"]
