"""hps: Human Preference Score v2 through open_clip.

HPSv2 (tgxs002/HPSv2, `score.py` / `hpsv2/img_score.py`) fine-tunes open_clip ViT-H-14 and scores
`torch.diagonal(image_features @ text_features.T)` where both are the model's *normalised* features
(open_clip's `forward` with `output_dict=True`): the per-pair cosine, with no logit scale. The
checkpoint (e.g. `HPS_v2.1_compressed.pt` in the `xswu/HPSv2` hub repository) is a torch file whose
`state_dict` holds the whole open_clip model; it is loaded over the architecture with `weights_only=True`.
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.verifiers.base import BATCH_SIZE_OPTION, Verifier, VerifierResources, register

torch = lazy_import("torch")
openclip = lazy_import("diffscale.verifiers.openclip")


@register("hps")
class HpsVerifier(Verifier):
    """Human Preference Score v2: the cosine of HPSv2's fine-tuned open_clip image and text features.

    Options: `model` (open_clip architecture, default ViT-H-14), `checkpoint` (required: a local
    file or `hf-hub:<repo>@<revision>:<filename>`)."""

    options = {
        **BATCH_SIZE_OPTION,
        "model": {"type": "string", "default": "ViT-H-14", "description": "The open_clip architecture."},
        "checkpoint": {"type": "string", "description": "The HPSv2 checkpoint: a local file or hf-hub:<repo>@<revision>:<file>."},
    }
    required = ("checkpoint",)

    def __init__(self, *, resources: VerifierResources, device="cpu", model: str = "ViT-H-14",
                 checkpoint: str | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if checkpoint is None:
            raise ValueError("hps: `checkpoint` is required (e.g. hf-hub:xswu/HPSv2@<revision>:HPS_v2.1_compressed.pt)")
        if not openclip.is_weights_file(checkpoint):
            raise ValueError(f"hps: `checkpoint` must be a file or a pinned hub file, got {checkpoint!r}")
        self.tower = openclip.OpenClipTower(model, checkpoint, device)

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        return (self.tower.encode_image(images) * self.tower.encode_text(prompts)).sum(-1)
