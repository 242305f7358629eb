"""The toy denoiser ladder: UNet2DConditionModels that differ only in base channel width.

Mei et al. scale Stable Diffusion's UNet by its base width c with channel multipliers [c, 2c, 4c, 4c];
at 8x8 latents we keep two levels, [c, 2c], with cross-attention at both, max(1, c // 8) heads (8 channels
each where c is a multiple of 8) and 2 normalisation groups, so that any even c is a width. Every
width trains with the same data, steps, batch and learning rate, and is saved as a complete Stable
Diffusion pipeline folder. Two objectives share that recipe:

- `v-prediction` (the diffusion ladder): SD's scaled-linear betas rescaled to zero terminal SNR, with
  v-prediction (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed"). SD's own
  schedule keeps sqrt(abar_T) = 0.068 of the signal at its last training step, so a model learns to read
  the image's layout and colours from that leak and sampling from pure noise cannot give them: on these
  8x8 latents an epsilon model with SD's schedule placed objects at chance and got worse with more DDIM
  steps. With zero terminal SNR the last step is pure noise, as at sampling, and epsilon is undefined
  there, hence v. Every diffusion sampler reads both settings from the saved scheduler config.
- `rectified-flow` (SD3, FLUX): the straight path x_s = (1 - s) x0 + s eps for s in [0, 1], the
  network predicting the velocity v = eps - x0 at timestep 1000 s, with s drawn logit-normal (Esser et
  al. 2024, who found it best among their timestep densities); the folder carries diffusers'
  FlowMatchEulerDiscreteScheduler, so only the flow samplers accept it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    FlowMatchEulerDiscreteScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from diffscale.models.flops import count_flops
from diffscale.toyworld.text import tokenize
from diffscale.toyworld.training import to_unit_range, train

HEAD_CHANNELS = 8
NORM_GROUPS = 2  # so every even number is a width (the ladder's 10 included)
ENCODING = "encoding the training set once with the frozen autoencoder and text encoder"
# Stable Diffusion's training schedule (scaled-linear betas, 1000 steps, epsilon prediction).
SD_SCHEDULE = dict(
    num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
    clip_sample=False, set_alpha_to_one=False, steps_offset=1, prediction_type="epsilon",
)
# The diffusion ladder's training schedule: SD's betas rescaled to zero terminal SNR, v-prediction.
TOY_SCHEDULE = SD_SCHEDULE | dict(rescale_betas_zero_snr=True, prediction_type="v_prediction")
# The flow ladder's schedule: timesteps 1000 s, no shift (8x8 latents have too few tokens to need one).
FLOW_SCHEDULE = dict(num_train_timesteps=1000, shift=1.0)


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
        attention_head_dim=(max(1, width // HEAD_CHANNELS), max(1, 2 * width // HEAD_CHANNELS)),
        norm_num_groups=NORM_GROUPS,
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


def v_corruption(x0: torch.Tensor, generator: torch.Generator):
    """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps at a uniformly drawn training timestep t (abar_T = 0);
    the target is the velocity v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0."""
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, TOY_SCHEDULE["num_train_timesteps"], (len(x0),), generator=generator)
    return _NOISING.add_noise(x0, noise, t), t, _NOISING.get_velocity(x0, noise, t)


def rectified_flow_corruption(x0: torch.Tensor, generator: torch.Generator):
    """Rectified flow: x_s = (1 - s) x0 + s eps with s = sigmoid(N(0, 1)), at timestep 1000 s; the
    target is the velocity v = eps - x0 (so x0 = x_s - s v, and an Euler step is x += (s' - s) v)."""
    noise = torch.randn(x0.shape, generator=generator)
    s = torch.sigmoid(torch.randn(len(x0), generator=generator))
    x_s = (1 - s.view(-1, 1, 1, 1)) * x0 + s.view(-1, 1, 1, 1) * noise
    return x_s, s * FLOW_SCHEDULE["num_train_timesteps"], noise - x0


_NOISING = DDPMScheduler.from_config(TOY_SCHEDULE)


@dataclass(frozen=True)
class Objective:
    """What a denoiser learns: how training corrupts x0 (-> input, timestep, target), and the scheduler whose
    config, saved with the model, tells the samplers that parameterisation."""
    corrupt: Callable
    scheduler: type
    schedule: dict


OBJECTIVES = {
    "v-prediction": Objective(v_corruption, DDIMScheduler, TOY_SCHEDULE),
    "rectified-flow": Objective(rectified_flow_corruption, FlowMatchEulerDiscreteScheduler, FLOW_SCHEDULE),
}


def fit(components: dict, images: np.ndarray, captions: list[str], width: int, steps: int, batch_size: int,
        lr: float, uncond_probability: float, seed: int, objective: str = "v-prediction"):
    torch.manual_seed(seed)
    text_encoder = components["text_encoder"]
    latents, states, caption_ids, uncond_id = encode_training_set(
        components["vae"], components["tokenizer"], text_encoder, images, captions
    )
    unet = build(width, text_encoder.config.hidden_size, latents.shape[1], latents.shape[-1])
    generator = torch.Generator().manual_seed(seed)
    corrupt = OBJECTIVES[objective].corrupt

    def loss(idx):
        noisy, timesteps, target = corrupt(latents[idx], generator)
        drop = torch.rand(len(idx), generator=generator) < uncond_probability
        context = states[torch.where(drop, uncond_id, caption_ids[idx])]
        prediction = unet(noisy, timesteps, encoder_hidden_states=context).sample
        return torch.nn.functional.mse_loss(prediction, target)

    losses, ledger = train(unet.parameters(), loss, len(latents), steps, batch_size, lr, seed,
                           desc=f"denoiser w{width} ({objective})")
    # Mei et al. count the denoiser's training; the frozen encoders' pass over the data is recorded apart.
    encoding = encoding_flops(components["vae"], components["tokenizer"], text_encoder, images, captions)
    ledger = replace(ledger, not_included={ENCODING: encoding})
    report = {"final_loss": float(np.mean(losses[-50:])), "params": sum(p.numel() for p in unet.parameters()),
              "objective": objective}
    return unet.eval(), report, ledger


def save_pipeline(unet: UNet2DConditionModel, components: dict, out: Path, objective: str = "v-prediction",
                  timestep_spacing: str | None = None) -> None:
    """A standard Stable Diffusion folder: `DiffusionPipeline.from_pretrained(out)` loads it offline.

    Its scheduler says how it was trained (`OBJECTIVES`), which the samplers read, and, for a diffusion
    objective, the `timestep_spacing` its samplers use unless they declare one (None: the scheduler's default).
    """
    spacing = {"timestep_spacing": timestep_spacing} if timestep_spacing and objective == "v-prediction" else {}
    scheduler = OBJECTIVES[objective].scheduler.from_config(OBJECTIVES[objective].schedule | spacing)
    pipeline = StableDiffusionPipeline(
        vae=components["vae"],
        text_encoder=components["text_encoder"],
        tokenizer=components["tokenizer"],
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(out, safe_serialization=True)
