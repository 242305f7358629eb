"""CLIPScore for any open_clip model: the toy CLIP (`local-dir:`) and real ones (`hf-hub:`) alike.

Convention: the raw cosine between image and text embeddings (Mei et al. report it, ~0.31 for SD);
`100 * max(cos, 0)` (torchmetrics) and `2.5 * max(cos, 0)` (Hessel et al.) are rescalings of it.
"""

from __future__ import annotations

import open_clip
import torch
from PIL import Image

CONVENTION = "raw cosine"


class OpenClipScorer:
    def __init__(self, model_name: str, pretrained: str | None = None, device: str | torch.device = "cpu"):
        self.name = model_name
        self.device = torch.device(device)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=self.device)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)

    @torch.no_grad()
    def cosine(self, images: list[Image.Image], prompts: list[str], batch_size: int = 256) -> torch.Tensor:
        """Per-image cosine similarity between each image and its own prompt."""
        scores = []
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([self.preprocess(im) for im in images[start : start + batch_size]]).to(self.device)
            tokens = self.tokenizer(prompts[start : start + batch_size]).to(self.device)
            image_features = self.model.encode_image(pixels, normalize=True)
            text_features = self.model.encode_text(tokens, normalize=True)
            scores.append((image_features * text_features).sum(-1).float().cpu())
        return torch.cat(scores)
