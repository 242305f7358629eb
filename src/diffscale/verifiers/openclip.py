"""An open_clip model used from tensors: the shared tower of clip-score, aesthetic, hps and self-consistency.

Loading goes through `metrics.clipscore.OpenClipScorer` (the same call that computes the CLIPScore
metric). Pixels are prepared on tensors the way open_clip's validation transform prepares PIL images:
resize (shortest side, longest side or squash, as the model's `preprocess_cfg` says; bicubic with
antialias), centre crop, then the model's mean/std. At the model's native size the resize is skipped,
as PIL skips it, so scores match the PIL path up to float rounding.
"""

from __future__ import annotations

import open_clip
import torch
import torch.nn.functional as F
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from diffscale.metrics.clipscore import OpenClipScorer
from diffscale.verifiers.base import is_hub_spec, resolve_file

# What open_clip hub repositories call their weights; safetensors first.
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_INTERPOLATION = {"bicubic": InterpolationMode.BICUBIC, "bilinear": InterpolationMode.BILINEAR, "nearest": InterpolationMode.NEAREST}


def is_weights_file(pretrained: str | None) -> bool:
    """A local path or a pinned hub file, as opposed to an open_clip pretrained tag such as `openai`."""
    if pretrained is None:
        return False
    return is_hub_spec(pretrained) or "/" in str(pretrained) or str(pretrained).endswith((".safetensors", ".bin", ".pt", ".pth"))


class OpenClipTower:
    """`model`: an open_clip name or `local-dir:<folder>`; `pretrained`: an open_clip tag, a local weights
    file or `hf-hub:<repo>@<revision>[:<filename>]` (loaded over the model, `weights_only=True`)."""

    def __init__(self, model: str, pretrained: str | None = None, device: str | torch.device = "cpu"):
        weights = resolve_file(pretrained, OPEN_CLIP_WEIGHTS) if is_weights_file(pretrained) else None
        scorer = OpenClipScorer(model, None if weights is not None else pretrained, device=device)
        if weights is not None:
            open_clip.load_checkpoint(scorer.model, str(weights), weights_only=True)
        self.name, self.device = model, torch.device(device)
        self.model = scorer.model.eval()
        self.tokenizer = scorer.tokenizer
        cfg = open_clip.get_model_preprocess_cfg(self.model)
        size = cfg.get("size", self.model.visual.image_size)
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.resize_mode = cfg.get("resize_mode", "shortest")
        self.interpolation = _INTERPOLATION.get(cfg.get("interpolation", "bicubic"), InterpolationMode.BICUBIC)
        self.fill = float(cfg.get("fill_color", 0)) / 255.0
        self.mean = torch.tensor(cfg.get("mean", open_clip.OPENAI_DATASET_MEAN), device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg.get("std", open_clip.OPENAI_DATASET_STD), device=self.device).view(1, 3, 1, 1)

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> the model's input, as open_clip's val transform does it on PIL."""
        h, w = images.shape[-2:]
        th, tw = self.size
        if (h, w) != (th, tw):
            if self.resize_mode == "squash":
                images = TF.resize(images, [th, tw], self.interpolation, antialias=True)
            else:
                scale = max(th / h, tw / w) if self.resize_mode == "shortest" else min(th / h, tw / w)
                new = [max(1, round(h * scale)), max(1, round(w * scale))]
                if self.resize_mode == "shortest" and th == tw:  # torchvision's Resize(int) rounding
                    new = [th, int(th * w / h)] if h <= w else [int(th * h / w), th]
                images = TF.resize(images, new, self.interpolation, antialias=True)
                if self.resize_mode == "longest":
                    pad_h, pad_w = th - images.shape[-2], tw - images.shape[-1]
                    images = F.pad(images, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], value=self.fill)
                images = TF.center_crop(images, [th, tw])
            images = images.clamp(0.0, 1.0)  # PIL's bicubic clamps to the pixel range too
        return (images - self.mean) / self.std

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(self.pixels(images), normalize=True).float()

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        return self.model.encode_text(self.tokenizer(prompts).to(self.device), normalize=True).float()
