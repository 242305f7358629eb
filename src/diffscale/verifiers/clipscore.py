"""clip-score: CLIPScore as a verifier, for any open_clip model (the toy CLIP or a real one).

Same convention as the CLIPScore metric (`metrics.clipscore`): the raw cosine between the normalised
image and text embeddings.
"""

from __future__ import annotations

from diffscale import manifest
from diffscale.lazy import lazy_import
from diffscale.verifiers.base import BATCH_SIZE_OPTION, Verifier, VerifierResources, register

torch = lazy_import("torch")
openclip = lazy_import("diffscale.verifiers.openclip")

OPEN_CLIP_OPTIONS = {
    "model": {"type": "string", "description": "An open_clip model name or local-dir:<folder>."},
    "pretrained": {"type": "string", "description": "An open_clip pretrained tag, a local file or hf-hub:<repo>@<revision>:<file>."},
}


def toy_clip_name(resources: VerifierResources, who: str) -> str:
    if resources.clip is None:
        raise ValueError(f"{who}: the toy CLIP was asked for but the study provides none (resources.clip is None)")
    return f"local-dir:{manifest.verified(resources.clip)}"


@register("clip-score")
class ClipScoreVerifier(Verifier):
    """CLIPScore (raw cosine) of any open_clip model, or of the toy world's CLIP.

    Options: `model` (open_clip name or `local-dir:`), `pretrained` (tag, file or pinned hub file),
    or `toy: true` for the study's toy CLIP."""

    options = {**BATCH_SIZE_OPTION, **OPEN_CLIP_OPTIONS,
               "toy": {"type": "boolean", "default": False, "description": "Use the toy world's CLIP."}}

    @classmethod
    def toy_components(cls, options: dict) -> set[str]:
        return {"clip"} if options.get("toy") else set()

    def __init__(self, *, resources: VerifierResources, device="cpu", model: str | None = None,
                 pretrained: str | None = None, toy: bool = False, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if toy:
            model = toy_clip_name(resources, "clip-score")
        if model is None:
            raise ValueError("clip-score: give `model` (and `pretrained`), or `toy: true`")
        self.tower = openclip.OpenClipTower(model, pretrained, device)

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        return (self.tower.encode_image(images) * self.tower.encode_text(prompts)).sum(-1)
