"""self-consistency: Ma et al.'s self-supervised verifier, no prompt needed.

Score = cosine similarity between the features of the x0 prediction at an intermediate noise level
(`intermediate`, sigma ~0.4 in the paper) and the features of the final sample. A sample whose
early prediction already agrees with where it ends is rewarded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from diffscale.verifiers.base import Verifier, VerifierResources, register
from diffscale.verifiers.clipscore import toy_clip_name
from diffscale.verifiers.openclip import OpenClipTower
from diffscale.verifiers.oracle import load_toy_oracle, to_classifier_input

TOY_BACKBONES = ("toy-clip", "toy-oracle")


@register("self-consistency")
class SelfConsistencyVerifier(Verifier):
    """Options: `backbone`: `toy-clip` (default when the study has a toy CLIP), `toy-oracle` (the
    oracle's penultimate features; default otherwise) or an open_clip model name / `local-dir:`
    with `pretrained`."""

    needs_intermediate = True

    def __init__(self, *, resources: VerifierResources, device="cpu", backbone: str | None = None,
                 pretrained: str | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if backbone is None:
            backbone = "toy-clip" if resources.clip is not None else "toy-oracle"
        self.backbone = backbone
        if backbone == "toy-oracle":
            classifier = load_toy_oracle(resources, None, "self-consistency").to(self.device)
            self._features = lambda images: classifier.features(to_classifier_input(images))
        else:
            model = toy_clip_name(resources, "self-consistency") if backbone == "toy-clip" else backbone
            tower = OpenClipTower(model, pretrained, device)
            self._features = tower.encode_image

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        both = self._features(torch.cat([intermediate, images]))
        early, final = both.float().chunk(2)
        return F.cosine_similarity(early, final, dim=-1)
