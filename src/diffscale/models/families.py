"""Pipeline families: how each kind of diffusers pipeline is conditioned, shaped, decoded and costed.

The sampling loop, search and verifiers never look inside a pipeline; they ask its family. One entry per
family, like a scheduler per file in diffusers:

- `encode(pipeline, prompts, device) -> (cond, uncond)`: the denoiser's keyword arguments (see
  `diffscale.sampling.loop.Conditioning`) for each prompt record, and for the null prompt (CFG);
- `latent_shape(pipeline)`: (channels, height, width) of one latent at the native resolution;
- `decode(pipeline, latents)`: images as float (B, 3, H, W) in [0, 1];
- `backbone(pipeline)`: the module whose evaluations are NFEs (UNet or transformer).

Families: `sd` (SD 1.x UNets: SD1.5, BK-SDM, Segmind small-sd / tiny-sd), `sdxl` (SDXL, SSD-1B, Vega: the
same pipeline with smaller UNets) and `dit` (class-conditional DiT on ImageNet classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from diffscale.sampling.loop import Conditioning


def _vae_decode(pipeline, latents: torch.Tensor) -> torch.Tensor:
    vae = pipeline.vae
    decoded = vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample
    return (decoded.float() / 2 + 0.5).clamp(0, 1)


def _unet_latent_shape(pipeline) -> tuple[int, int, int]:
    size = pipeline.unet.config.sample_size
    return pipeline.unet.config.in_channels, size, size


# --- SD 1.x -------------------------------------------------------------------------------------------

def _sd_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    cond, uncond = pipeline.encode_prompt([p["prompt"] for p in prompts], device, 1, True)
    return {"encoder_hidden_states": cond}, {"encoder_hidden_states": uncond}


# --- SDXL (SDXL, SSD-1B, Vega) ------------------------------------------------------------------------

def _sdxl_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    """Both text encoders' states, the pooled embedding and the micro-conditioning time ids.

    The time ids are what `StableDiffusionXLPipeline.__call__` builds by default: original size = target
    size = the native resolution, crop (0, 0); the unconditional branch gets the same ids. The null prompt
    is zeros when the pipeline says `force_zeros_for_empty_prompt` (SDXL's default), as in diffusers.
    """
    embeds, null_embeds, pooled, null_pooled = pipeline.encode_prompt(
        [p["prompt"] for p in prompts], device=device, num_images_per_prompt=1, do_classifier_free_guidance=True
    )
    pixels = pipeline.default_sample_size * pipeline.vae_scale_factor
    projection = int(pooled.shape[-1]) if pipeline.text_encoder_2 is None else pipeline.text_encoder_2.config.projection_dim
    time_ids = pipeline._get_add_time_ids((pixels, pixels), (0, 0), (pixels, pixels), dtype=embeds.dtype,
                                          text_encoder_projection_dim=projection)
    time_ids = time_ids.to(device).repeat(len(prompts), 1)

    def kwargs(states, pooled_states):
        return {"encoder_hidden_states": states, "added_cond_kwargs": {"text_embeds": pooled_states, "time_ids": time_ids}}

    return kwargs(embeds, pooled), kwargs(null_embeds, null_pooled)


def _sdxl_decode(pipeline, latents: torch.Tensor) -> torch.Tensor:
    """SDXL's VAE overflows in float16: decode in float32 when its config says `force_upcast`, as the
    pipeline does, and undo the optional latent mean/std normalisation."""
    vae = pipeline.vae
    upcast = vae.dtype == torch.float16 and vae.config.force_upcast
    if upcast:
        vae.to(torch.float32)
    try:
        latents = latents.to(vae.dtype)
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
            std = torch.tensor(std, device=latents.device, dtype=latents.dtype).view(1, -1, 1, 1)
            latents = latents * std / vae.config.scaling_factor + mean
        else:
            latents = latents / vae.config.scaling_factor
        decoded = vae.decode(latents).sample
    finally:
        if upcast:
            vae.to(torch.float16)
    return (decoded.float() / 2 + 0.5).clamp(0, 1)


# --- DiT (class-conditional, ImageNet) ----------------------------------------------------------------

def _dit_class_id(pipeline, prompt: dict) -> int:
    if "class_id" in prompt.get("labels", {}):
        return int(prompt["labels"]["class_id"])
    text = prompt["prompt"].strip()
    if text not in pipeline.labels:
        raise ValueError(f"prompt {prompt['id']}: {text!r} is not an ImageNet label of this DiT pipeline; give "
                         "labels.class_id, or a prompt equal to one of the names in the pipeline's id2label")
    return pipeline.get_label_ids([text])[0]


def _dit_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    """The class id of each prompt record, and the null class for the unconditional branch.

    A record names its class by `labels["class_id"]` (0..999), or by a prompt equal to one of the
    ImageNet names of the pipeline's id2label ("white shark"). The null class is index
    `num_embeds_ada_norm` (1000), the label-dropout embedding DiT was trained with, as in `DiTPipeline`.

    Guidance: the original DiT code (`forward_with_cfg`) guides only the first 3 of the 4 latent channels
    "for exact reproducibility" of its paper; diffusers' `DiTPipeline` guides all latent channels, which
    is standard classifier-free guidance and what we do too (`guided_epsilon`, same as every family).
    The learned variance (the transformer's second half of channels) is dropped by `CountingDenoiser`,
    as `DiTPipeline` drops it: the scheduler supplies its own variance.
    """
    labels = torch.tensor([_dit_class_id(pipeline, p) for p in prompts], dtype=torch.long, device=device)
    null = torch.full_like(labels, pipeline.transformer.config.num_embeds_ada_norm)
    return {"class_labels": labels}, {"class_labels": null}


def _dit_latent_shape(pipeline) -> tuple[int, int, int]:
    size = pipeline.transformer.config.sample_size
    return pipeline.transformer.config.in_channels, size, size


@dataclass(frozen=True)
class Family:
    name: str
    encode: Callable[..., tuple[Conditioning, Conditioning]]
    latent_shape: Callable[..., tuple[int, int, int]]
    decode: Callable[..., torch.Tensor]
    backbone: Callable[..., torch.nn.Module]
    pipelines: tuple[str, ...]  # diffusers pipeline class names of this family


FAMILIES: dict[str, Family] = {
    "sd": Family("sd", _sd_encode, _unet_latent_shape, _vae_decode, lambda p: p.unet,
                 ("StableDiffusionPipeline",)),
    "sdxl": Family("sdxl", _sdxl_encode, _unet_latent_shape, _sdxl_decode, lambda p: p.unet,
                   ("StableDiffusionXLPipeline",)),
    "dit": Family("dit", _dit_encode, _dit_latent_shape, _vae_decode, lambda p: p.transformer,
                  ("DiTPipeline",)),
}


def family_of(pipeline) -> Family:
    kind = type(pipeline).__name__
    for family in FAMILIES.values():
        if kind in family.pipelines:
            return family
    known = sorted(name for f in FAMILIES.values() for name in f.pipelines)
    raise ValueError(f"no pipeline family for {kind}; supported pipelines: {known}")
