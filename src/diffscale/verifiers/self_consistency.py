"""self-consistency: Ma et al.'s self-supervised verifier, no prompt needed.

Score = cosine similarity between the features of the x0 prediction at an intermediate noise level
(`intermediate`, sigma ~0.4 in the paper) and the features of the final sample. A sample whose
early prediction already agrees with where it ends is rewarded.
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.verifiers.base import BATCH_SIZE_OPTION, Verifier, VerifierResources, register
from diffscale.verifiers.clipscore import toy_clip_name
from diffscale.verifiers.oracle import load_toy_oracle, to_classifier_input

torch = lazy_import("torch")
openclip = lazy_import("diffscale.verifiers.openclip")

TOY_BACKBONES = {"toy-clip": "clip", "toy-oracle": "oracle"}


@register("self-consistency")
class SelfConsistencyVerifier(Verifier):
    """Ma et al.'s self-supervised verifier: agreement of the x0 prediction at `level` with the final image.

    Options: `backbone`: `toy-clip` (default), `toy-oracle` (the oracle's penultimate features) or an
    open_clip model name / `local-dir:` with `pretrained`; `level`: the fraction of the trajectory at
    which the x0 prediction is taken."""

    options = {
        **BATCH_SIZE_OPTION,
        "backbone": {"type": "string", "default": "toy-clip",
                     "description": "toy-clip, toy-oracle, or an open_clip model name / local-dir:<folder>."},
        "pretrained": {"type": "string", "description": "open_clip backbones: a pretrained tag, a local file or a pinned hub file."},
        "level": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 0.5,
                  "description": "Fraction of the trajectory at which the x0 prediction is taken (sigma ~0.4 in Ma et al.)."},
    }

    @classmethod
    def toy_components(cls, options: dict) -> set[str]:
        backbone = options.get("backbone", cls.options["backbone"]["default"])
        return {TOY_BACKBONES[backbone]} if backbone in TOY_BACKBONES else set()

    @classmethod
    def level(cls, options: dict) -> float:
        return options.get("level", cls.options["level"]["default"])

    def __init__(self, *, resources: VerifierResources, device="cpu", backbone: str = "toy-clip",
                 pretrained: str | None = None, level: float = 0.5, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        self.intermediate_level = level
        self.backbone = backbone
        if backbone == "toy-oracle":
            classifier = load_toy_oracle(resources, None, "self-consistency").to(self.device)
            self._features = lambda images: classifier.features(to_classifier_input(images))
        else:
            model = toy_clip_name(resources, "self-consistency") if backbone == "toy-clip" else backbone
            tower = openclip.OpenClipTower(model, pretrained, device)
            self._features = tower.encode_image

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        both = self._features(torch.cat([intermediate, images]))
        early, final = both.float().chunk(2)
        return torch.nn.functional.cosine_similarity(early, final, dim=-1)
