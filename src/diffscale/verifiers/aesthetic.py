"""aesthetic: the LAION improved aesthetic predictor (christophschuhmann/improved-aesthetic-predictor).

An MLP (no activations between its Linear layers, as in the original) on L2-normalised CLIP ViT-L/14
image embeddings; the original checkpoint `sac+logos+ava1-l14-linearMSE.pth` is a plain state dict
with keys `layers.{0,2,4,6,7}.{weight,bias}` (Sequential indices; Dropouts hold none). Scores are on
the AVA scale (~1-10). The input width follows the CLIP's embedding width, so a tiny CLIP works too.
"""

from __future__ import annotations

import torch
from torch import nn

from diffscale.verifiers.base import Verifier, VerifierResources, load_state_dict, register, resolve_file
from diffscale.verifiers.openclip import OpenClipTower


class AestheticMLP(nn.Module):
    def __init__(self, input_size: int = 768):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(input_size, 1024), nn.Dropout(0.2),
            nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


@register("aesthetic")
class AestheticVerifier(Verifier):
    """Options: `clip_model` (default ViT-L-14), `clip_pretrained` (default openai), `mlp`: a local
    .safetensors/.pth file or `hf-hub:<repo>@<revision>:<filename>` (required)."""

    def __init__(self, *, resources: VerifierResources, device="cpu", clip_model: str = "ViT-L-14",
                 clip_pretrained: str | None = "openai", mlp: str | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        if mlp is None:
            raise ValueError("aesthetic: `mlp` is required (e.g. the original sac+logos+ava1-l14-linearMSE.pth, "
                             "as a local file or hf-hub:<repo>@<revision>:<filename>)")
        self.tower = OpenClipTower(clip_model, clip_pretrained, device)
        self.mlp = AestheticMLP(self.tower.embed_dim)
        self.mlp.load_state_dict(load_state_dict(resolve_file(mlp)))
        self.mlp.to(self.device).eval()

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        return self.mlp(self.tower.encode_image(images))[:, 0]
