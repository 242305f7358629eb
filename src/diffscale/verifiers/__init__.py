"""Verifiers: one interface (`Verifier.score(images, prompts) -> (B,)`), one registry of kinds.

Kinds: oracle (toy), clip-score, self-consistency, aesthetic, hps, classifier (ImageNet class
probability, for class-conditional models), ensemble. ImageReward is not
registered: `image-reward` 1.5 pins timm==0.6.13 (open_clip_torch 3.x needs timm>=1.0.17, so pip
would downgrade open_clip) and its BLIP code imports `apply_chunking_to_forward`,
`find_pruneable_heads_and_indices` and `prune_linear_layer` from `transformers.modeling_utils`,
which transformers 5 no longer has.
"""

from diffscale.lazy import lazy_import
from diffscale.verifiers.base import (
    VERIFIERS,
    Verifier,
    VerifierCost,
    VerifierResources,
    build_verifiers,
    register,
)

# Importing the modules registers their kinds, in this order (the schema lists them so).
from diffscale.verifiers import oracle, clipscore, self_consistency, aesthetic, hps, ensemble, classifier  # noqa: E402,F401,I001

zoo = lazy_import("diffscale.models.zoo")


def with_members(names: list[str], specs: dict[str, dict]) -> list[str]:
    """The named verifiers and, transitively, the members they are built from (each once, in order)."""
    out: list[str] = []
    wanted = list(names)
    while wanted:
        name = wanted.pop(0)
        if name in out or name not in specs:
            continue
        out.append(name)
        spec = specs[name]
        wanted += VERIFIERS[spec["kind"]].members(spec) if spec.get("kind") in VERIFIERS else []
    return out


def toy_components(names: list[str], specs: dict[str, dict]) -> set[str]:
    """The toy-world components (`oracle`, `clip`) the named verifiers read, members included."""
    return {c for name in with_members(names, specs) for c in VERIFIERS[specs[name]["kind"]].toy_components(specs[name])}


def intermediate_levels(name: str, specs: dict[str, dict]) -> set[float]:
    """The levels at which a verifier (or its members) compares x0 predictions with the result; empty: none."""
    return {level for member in with_members([name], specs)
            if (level := VERIFIERS[specs[member]["kind"]].level(specs[member])) is not None}


def study_verifiers(params: dict, paths, names: list[str], device) -> dict:
    """The named verifiers of a study (`paths`: its `cells.Paths`), with the ensemble members they need and
    the toy world's components they read."""
    specs = {name: params["verifiers"][name] for name in with_members(names, params["verifiers"])}
    needed = toy_components(names, specs)
    resources = VerifierResources(oracle=paths.component("oracle") if "oracle" in needed else None,
                                  clip=paths.component("clip") if "clip" in needed else None)
    built = build_verifiers(specs, resources, zoo.pick_device(device) if isinstance(device, str) else device)
    return {name: built[name] for name in names}


__all__ = ["VERIFIERS", "Verifier", "VerifierCost", "VerifierResources", "build_verifiers", "intermediate_levels",
           "register", "study_verifiers", "toy_components", "with_members"]
