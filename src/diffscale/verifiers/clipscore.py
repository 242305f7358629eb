"""clip-score: CLIPScore as a verifier, for any open_clip model (the toy CLIP or a real one).

Same convention as the CLIPScore metric (`metrics.clipscore`): the raw cosine between the normalised
image and text embeddings.
"""

from __future__ import annotations

import torch

from diffscale.verifiers.base import Verifier, VerifierResources, register
from diffscale.verifiers.openclip import OpenClipTower


def toy_clip_name(resources: VerifierResources, who: str) -> str:
    if resources.clip is None:
        raise ValueError(f"{who}: the toy CLIP was asked for but the study provides none (resources.clip is None)")
    return f"local-dir:{resources.clip}"


@register("clip-score")
class ClipScoreVerifier(Verifier):
    """Options: `model` (open_clip name or `local-dir:`), `pretrained` (tag, file or pinned hub file),
    or `toy: true` for the study's toy CLIP."""

    def __init__(self, *, resources: VerifierResources, device="cpu", model: str | None = None,
                 pretrained: str | None = None, toy: bool = False, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if toy:
            model = toy_clip_name(resources, "clip-score")
        if model is None:
            raise ValueError("clip-score: give `model` (and `pretrained`), or `toy: true`")
        self.tower = OpenClipTower(model, pretrained, device)

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        return (self.tower.encode_image(images) * self.tower.encode_text(prompts)).sum(-1)
