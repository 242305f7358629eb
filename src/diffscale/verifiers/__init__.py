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

__all__ = ["VERIFIERS", "Verifier", "VerifierCost", "VerifierResources", "build_verifiers", "register"]
