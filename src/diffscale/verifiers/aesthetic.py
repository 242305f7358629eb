"""aesthetic: the LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor).

An MLP (no activations between its Linear layers, as in the original) on L2-normalised CLIP ViT-L/14
image embeddings; the original checkpoint `sac+logos+ava1-l14-linearMSE.pth` is a plain state dict
with keys `layers.{0,2,4,6,7}.{weight,bias}` (Sequential indices; Dropouts hold none). Scores are on
the AVA scale (~1-10). The input width follows the CLIP's embedding width, so a tiny CLIP works too.
"""

from __future__ import annotations

from diffscale.lazy import lazy_import
from diffscale.verifiers.base import (
    BATCH_SIZE_OPTION,
    Verifier,
    VerifierResources,
    load_state_dict,
    register,
    resolve_file,
)

torch = lazy_import("torch")
openclip = lazy_import("diffscale.verifiers.openclip")


def aesthetic_mlp(input_size: int = 768):
    """The predictor, under the original's state-dict keys (`layers.<Sequential index>`); call its `layers`."""
    nn = torch.nn
    return nn.ModuleDict({"layers": nn.Sequential(
        nn.Linear(input_size, 1024), nn.Dropout(0.2),
        nn.Linear(1024, 128), nn.Dropout(0.2),
        nn.Linear(128, 64), nn.Dropout(0.1),
        nn.Linear(64, 16),
        nn.Linear(16, 1),
    )})


@register("aesthetic")
class AestheticVerifier(Verifier):
    """The LAION aesthetic predictor: an MLP on CLIP ViT-L/14 image embeddings, on the AVA scale (~1-10).

    Options: `clip_model` (default ViT-L-14), `clip_pretrained` (default openai), `mlp`: a local
    .safetensors/.pth file or `hf-hub:<repo>@<revision>:<filename>` (required)."""

    options = {
        **BATCH_SIZE_OPTION,
        "clip_model": {"type": "string", "default": "ViT-L-14", "description": "The open_clip model whose embeddings the MLP reads."},
        "clip_pretrained": {"type": "string", "default": "openai", "description": "Its pretrained tag, local file or pinned hub file."},
        "mlp": {"type": "string", "description": "The predictor's weights: a local .safetensors/.pth file or "
                                                 "hf-hub:<repo>@<revision>:<file>."},
    }
    required = ("mlp",)

    def __init__(self, *, resources: VerifierResources, device="cpu", clip_model: str = "ViT-L-14",
                 clip_pretrained: str | None = "openai", mlp: str | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if mlp is None:
            raise ValueError("aesthetic: `mlp` is required (e.g. the original sac+logos+ava1-l14-linearMSE.pth, "
                             "as a local file or hf-hub:<repo>@<revision>:<filename>)")
        self.tower = openclip.OpenClipTower(clip_model, clip_pretrained, device)
        self.mlp = aesthetic_mlp(self.tower.embed_dim)
        self.mlp.load_state_dict(load_state_dict(resolve_file(mlp)))
        self.mlp.to(self.device).eval()

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        return self.mlp["layers"](self.tower.encode_image(images))[:, 0]
