"""A tiny CLIP trained contrastively with open_clip, saved in open_clip's own folder format.

The folder (`open_clip_config.json` + `open_clip_model.safetensors`) is what `hf-hub:` checkpoints
contain, so CLIPScore loads it with `open_clip.create_model_and_transforms("local-dir:<folder>")`: the
same call, tokenizer (open_clip's bundled BPE) and preprocessing that score real images with a real CLIP.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open_clip
import torch
from safetensors.torch import save_file

from diffscale.toyworld.scenes import IMAGE_SIZE
from diffscale.toyworld.training import train

CONTEXT_LENGTH = 16
MEAN, STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def model_config(width: int, layers: int) -> dict:
    return {
        "embed_dim": width,
        "vision_cfg": {"image_size": IMAGE_SIZE, "layers": layers, "width": width, "patch_size": 4, "head_width": 32},
        "text_cfg": {"context_length": CONTEXT_LENGTH, "vocab_size": 49408, "width": width, "heads": max(1, width // 32), "layers": layers},
    }


def fit(images: np.ndarray, captions: list[str], width: int, layers: int, steps: int, batch_size: int, lr: float, seed: int):
    torch.manual_seed(seed)
    config = model_config(width, layers)
    model = open_clip.CLIP(**config)
    tokenizer = open_clip.SimpleTokenizer(context_length=CONTEXT_LENGTH)
    tokens = tokenizer(captions)
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float().div(255.0)
    pixels = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    clip_loss = open_clip.ClipLoss()

    def loss(idx):
        image_features, text_features, logit_scale = model(pixels[idx], tokens[idx])[:3]
        return clip_loss(image_features, text_features, logit_scale)

    losses, ledger = train(model.parameters(), loss, len(captions), steps, batch_size, lr, seed, desc="clip")
    return model.eval(), config, {"final_loss": float(np.mean(losses[-20:]))}, ledger


def save(model: open_clip.CLIP, config: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))
    preprocess = {"mean": list(MEAN), "std": list(STD), "interpolation": "bicubic", "resize_mode": "shortest"}
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}, indent=2))
