"""The toy denoiser ladder: UNet2DConditionModels that differ only in base channel width.

Mei et al. scale Stable Diffusion's UNet by its base width c with channel multipliers [c, 2c, 4c, 4c];
at 8x8 latents we keep two levels, [c, 2c], with cross-attention at both, a fixed head size of 8
channels, and SD's noise schedule and epsilon objective. Every width trains with the same data, steps,
batch and learning rate, and is saved as a complete Stable Diffusion pipeline folder.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from diffscale.toyworld.text import tokenize
from diffscale.models.flops import count_flops
from diffscale.toyworld.training import to_unit_range, train

HEAD_CHANNELS = 8
ENCODING = "encoding the training set once with the frozen autoencoder and text encoder"
# Stable Diffusion's training schedule (scaled-linear betas, 1000 steps, epsilon prediction).
SD_SCHEDULE = dict(
    num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)


def build(width: int, cross_attention_dim: int, latent_channels: int = 4, sample_size: int = 8) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=sample_size,
        in_channels=latent_channels,
        out_channels=latent_channels,
        layers_per_block=1,
        block_out_channels=(width, 2 * width),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim,
        # diffusers' `attention_head_dim` is the number of heads (a historical misnomer).
        attention_head_dim=(width // HEAD_CHANNELS, 2 * width // HEAD_CHANNELS),
        norm_num_groups=8,
    )


@torch.no_grad()
def encode_training_set(vae: AutoencoderKL, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, images, captions):
    """Latents (scaled as the pipeline expects) and the text states of every distinct caption."""
    latents = torch.cat([
        vae.encode(to_unit_range(images[i : i + 512])).latent_dist.mode() for i in range(0, len(images), 512)
    ]) * vae.config.scaling_factor
    distinct = sorted(set(captions)) + [""]  # "" is the unconditional prompt classifier-free guidance uses
    states = text_encoder(tokenize(tokenizer, distinct)).last_hidden_state
    index = {c: i for i, c in enumerate(distinct)}
    caption_ids = torch.tensor([index[c] for c in captions])
    return latents, states, caption_ids, index[""]


def encoding_flops(vae: AutoencoderKL, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, images, captions) -> int:
    """FLOPs of `encode_training_set` on all `images`, counted with one image (not by encoding them again): the
    autoencoder's cost is linear in the number of images. The counter stays off the real encoding, whose floats
    it could change (see `training.count_step`)."""
    one_image = count_flops(lambda: vae.encode(to_unit_range(images[:1])))
    return count_flops(lambda: encode_training_set(vae, tokenizer, text_encoder, images[:1], captions)) + (
        len(images) - 1) * one_image


def fit(components: dict, images: np.ndarray, captions: list[str], width: int, steps: int, batch_size: int,
        lr: float, uncond_probability: float, seed: int):
    torch.manual_seed(seed)
    text_encoder = components["text_encoder"]
    latents, states, caption_ids, uncond_id = encode_training_set(
        components["vae"], components["tokenizer"], text_encoder, images, captions
    )
    unet = build(width, text_encoder.config.hidden_size, latents.shape[1], latents.shape[-1])
    noise_schedule = DDPMScheduler.from_config(SD_SCHEDULE)
    generator = torch.Generator().manual_seed(seed)

    def loss(idx):
        x0 = latents[idx]
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, noise_schedule.config.num_train_timesteps, (len(idx),), generator=generator)
        drop = torch.rand(len(idx), generator=generator) < uncond_probability
        context = states[torch.where(drop, uncond_id, caption_ids[idx])]
        prediction = unet(noise_schedule.add_noise(x0, noise, t), t, encoder_hidden_states=context).sample
        return torch.nn.functional.mse_loss(prediction, noise)

    losses, ledger = train(unet.parameters(), loss, len(latents), steps, batch_size, lr, seed, desc=f"denoiser w{width}")
    # Mei et al. count the denoiser's training; the frozen encoders' pass over the data is recorded apart.
    encoding = encoding_flops(components["vae"], components["tokenizer"], text_encoder, images, captions)
    ledger = replace(ledger, not_included={ENCODING: encoding})
    report = {"final_loss": float(np.mean(losses[-50:])), "params": sum(p.numel() for p in unet.parameters())}
    return unet.eval(), report, ledger


def save_pipeline(unet: UNet2DConditionModel, components: dict, out: Path) -> None:
    """A standard Stable Diffusion folder: `DiffusionPipeline.from_pretrained(out)` loads it offline."""
    pipeline = StableDiffusionPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=unet,
        scheduler=DDIMScheduler.from_config(SD_SCHEDULE),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out, safe_serialization=True)
