"""Pipeline families: how each kind of diffusers pipeline is conditioned, shaped, decoded and costed.

The sampling loop, search and verifiers never look inside a pipeline; they ask its family. One entry per
family, like a scheduler per file in diffusers:

- `encode(pipeline, prompts, device) -> (cond, uncond)`: the denoiser's batch-first inputs (see
  `diffscale.sampling.loop.Conditioning`) for each prompt record, and for the null prompt (CFG);
- `latent_shape(pipeline)`: the shape of one latent as the scheduler sees it, at the native resolution
  ((channels, height, width), or FLUX's packed (tokens, channels));
- `decode(pipeline, latents)`: images as float (B, 3, H, W) in [0, 1];
- `backbone(pipeline)`: the module whose evaluations are NFEs (UNet or transformer);
- `call(backbone, latents, timesteps, cond)`: one evaluation as the pipeline makes it, in the scheduler's
  parameterisation (epsilon, v or flow velocity), learned variance dropped;
- `schedule_options(pipeline, latent_shape, steps=None)`: extra `scheduler.set_timesteps` arguments (FLUX's
  and SD3's `mu` under dynamic shifting; with `steps`, FLUX's own sigmas, for FlowMatchEuler);
- `embedded_guidance(pipeline)`: the guidance scale is an input of the model (guidance-distilled FLUX.1-dev),
  not a CFG pair; `guidance_inputs` turns a guidance scale into the loop's inputs accordingly.

Families: `sd` (SD 1.x UNets: SD1.5, BK-SDM, Segmind small-sd / tiny-sd), `sdxl` (SDXL, SSD-1B, Vega: the
same pipeline with smaller UNets), `dit` (class-conditional DiT on ImageNet classes), `flux` (FLUX.1
dev / schnell), `sd3` (SD3 and SD3.5 Large / Medium), `pixart` (PixArt-Sigma) and `lcm` (latent consistency
models: LCM-distilled SD UNets with the guidance scale as an input, the toy ladder's students).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from diffusers.pipelines.flux.pipeline_flux import FluxPipeline, calculate_shift
from torch.utils._pytree import tree_leaves

from diffscale.sampling.loop import Conditioning, drop_learned_variance, evaluate


def _images(decoded: torch.Tensor) -> torch.Tensor:
    return (decoded.float() / 2 + 0.5).clamp(0, 1)


def _vae_decode(pipeline, latents: torch.Tensor) -> torch.Tensor:
    vae = pipeline.vae
    return _images(vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor).sample)


def _shifted_vae_decode(pipeline, latents: torch.Tensor) -> torch.Tensor:
    """SD3's and FLUX's 16-channel VAE latents are shifted as well as scaled (`shift_factor`)."""
    vae = pipeline.vae
    return _images(vae.decode(latents.to(vae.dtype) / vae.config.scaling_factor + vae.config.shift_factor).sample)


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


def _transformer_latent_shape(pipeline) -> tuple[int, int, int]:
    """DiT, SD3 and PixArt pipelines default to the transformer's `sample_size` latent pixels."""
    size = pipeline.transformer.config.sample_size
    return pipeline.transformer.config.in_channels, size, size


def _dynamic_shift(pipeline, image_tokens: int, max_shift: float) -> dict:
    """`{"mu": ...}` for a flow-matching scheduler with resolution-dependent shifting, computed from the
    number of image tokens as FluxPipeline and StableDiffusion3Pipeline do (their `max_shift` defaults differ:
    1.15 and 1.16); `{}` when the scheduler shifts statically."""
    config = pipeline.scheduler.config
    if not config.get("use_dynamic_shifting"):
        return {}
    return {"mu": calculate_shift(image_tokens, config.get("base_image_seq_len", 256), config.get("max_image_seq_len", 4096),
                                  config.get("base_shift", 0.5), config.get("max_shift", max_shift))}


# --- FLUX.1 (dev, schnell) ----------------------------------------------------------------------------

def _flux_text_tokens(pipeline) -> int:
    """T5 tokens: 512 for the guidance-distilled model (FluxPipeline's default), 256 for schnell (Black
    Forest Labs' reference `load_t5(max_length=256 if name == "flux-schnell" else 512)`, and the
    `max_sequence_length=256` of diffusers' schnell example)."""
    return 512 if pipeline.transformer.config.guidance_embeds else 256


def _flux_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    """T5 states and CLIP's pooled embedding, from `FluxPipeline.encode_prompt`.

    FLUX has no CFG pair: FluxPipeline guides by an input of the distilled model (`guidance_inputs`), and its
    `true_cfg_scale` with a negative prompt is out of scope here. So there is no null prompt: the
    unconditional branch is the conditioning itself, which the loop never evaluates (guidance 1).
    The text ids (all zeros, one row per text token) are rebuilt by `_flux_call`, not carried here, as
    they are not batch-first.
    """
    embeds, pooled, _ = pipeline.encode_prompt([p["prompt"] for p in prompts], device=device, num_images_per_prompt=1,
                                               max_sequence_length=_flux_text_tokens(pipeline))
    cond = {"encoder_hidden_states": embeds, "pooled_projections": pooled}
    return cond, cond


def _flux_latent_shape(pipeline) -> tuple[int, int]:
    """Packed latents: (image tokens, 4 x latent channels), one token per 2x2 patch of the latent image.

    The loop draws its unit Gaussian noise in this packed shape and the scheduler steps on it, as in
    FluxPipeline (whose noise is drawn unpacked and then packed: the same distribution, other bytes).
    The size is FluxPipeline's default, `default_sample_size` (128) latent pixels: 1024 px, 4096 tokens.
    """
    pixels = pipeline.default_sample_size * pipeline.vae_scale_factor
    side = 2 * (pixels // (pipeline.vae_scale_factor * 2))  # as FluxPipeline.prepare_latents
    return (side // 2) ** 2, pipeline.transformer.config.in_channels


def _flux_side(latents: torch.Tensor) -> int:
    """Patches per side of a square packed latent (the family samples at the square native size)."""
    side = math.isqrt(latents.shape[1])
    if side * side != latents.shape[1]:
        raise ValueError(f"FLUX latents of {latents.shape[1]} tokens are not a square grid of 2x2 patches")
    return side


def _flux_call(backbone, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """FluxPipeline's transformer call: keywords, the timestep / 1000, and the position ids of the image
    patches (row, column) and text tokens (zeros), rebuilt from the shapes as the pipeline builds them."""
    side = _flux_side(latents)
    img_ids = FluxPipeline._prepare_latent_image_ids(latents.shape[0], side, side, latents.device, latents.dtype)
    txt_ids = torch.zeros(cond["encoder_hidden_states"].shape[1], 3, device=latents.device, dtype=latents.dtype)
    return backbone(hidden_states=latents, timestep=timesteps.to(latents.dtype) / 1000, img_ids=img_ids, txt_ids=txt_ids,
                    **cond).sample


def _flux_decode(pipeline, latents: torch.Tensor) -> torch.Tensor:
    pixels = 2 * _flux_side(latents) * pipeline.vae_scale_factor
    return _shifted_vae_decode(pipeline, pipeline._unpack_latents(latents, pixels, pixels, pipeline.vae_scale_factor))


def _flux_schedule(pipeline, latent_shape: tuple[int, ...], steps: int | None = None) -> dict:
    """FluxPipeline's `set_timesteps` arguments: `mu` from the image tokens (dynamic shifting), and, when
    `steps` is given, its own sigmas `linspace(1, 1/steps, steps)` (the scheduler's default would end at
    sigma 1/1000, not 1/steps; the pipeline drops them for a scheduler with `use_flow_sigmas`)."""
    options = _dynamic_shift(pipeline, latent_shape[0], max_shift=1.15)
    if steps is not None and not pipeline.scheduler.config.get("use_flow_sigmas"):
        options["sigmas"] = torch.linspace(1.0, 1 / steps, steps, dtype=torch.float64).tolist()
    return options


# --- SD3 and SD3.5 (MMDiT, MMDiT-X) -------------------------------------------------------------------

def _sd3_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    """`StableDiffusion3Pipeline.encode_prompt` with its defaults: CLIP-L and CLIP-G penultimate states side by
    side, zero-padded to T5's width and followed by 256 T5 tokens (77 + 256 = 333 text tokens); the pooled
    embedding is both CLIPs' projections; the null prompt is "" (real CFG)."""
    embeds, null_embeds, pooled, null_pooled = pipeline.encode_prompt(
        [p["prompt"] for p in prompts], prompt_2=None, prompt_3=None, device=device, num_images_per_prompt=1,
        do_classifier_free_guidance=True, max_sequence_length=256,
    )
    return ({"encoder_hidden_states": embeds, "pooled_projections": pooled},
            {"encoder_hidden_states": null_embeds, "pooled_projections": null_pooled})


def _sd3_call(backbone, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """As StableDiffusion3Pipeline: by keyword, with the scheduler's timestep (sigma x 1000) as it is."""
    return backbone(hidden_states=latents, timestep=timesteps, **cond).sample


def _sd3_schedule(pipeline, latent_shape: tuple[int, ...], steps: int | None = None) -> dict:
    patch = pipeline.transformer.config.patch_size
    return _dynamic_shift(pipeline, (latent_shape[1] // patch) * (latent_shape[2] // patch), max_shift=1.16)


# --- PixArt-Sigma -------------------------------------------------------------------------------------

def _pixart_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    """T5 states of 300 tokens with their attention mask, and the same for the null prompt "", from
    `PixArtSigmaPipeline.encode_prompt`.

    The pipeline's `clean_caption=True` needs beautifulsoup4 and ftfy and falls back to lower-casing and
    stripping without them; we always lower-case and strip (`clean_caption=False`), so the conditioning
    does not depend on which optional packages are installed.
    """
    embeds, mask, null_embeds, null_mask = pipeline.encode_prompt(
        [p["prompt"] for p in prompts], do_classifier_free_guidance=True, negative_prompt="", num_images_per_prompt=1,
        device=device, clean_caption=False, max_sequence_length=300,
    )
    return ({"encoder_hidden_states": embeds, "encoder_attention_mask": mask},
            {"encoder_hidden_states": null_embeds, "encoder_attention_mask": null_mask})


def _pixart_call(backbone, latents: torch.Tensor, timesteps: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """As PixArtSigmaPipeline: by keyword, no micro-conditions (resolution and aspect ratio None), the
    learned sigma dropped."""
    out = backbone(latents, timestep=timesteps, added_cond_kwargs={"resolution": None, "aspect_ratio": None}, **cond).sample
    return drop_learned_variance(out, latents)


# --- Latent consistency models (LCM-distilled SD UNets, the toy ladder's students) --------------------------

def _lcm_encode(pipeline, prompts: list[dict], device) -> tuple[Conditioning, Conditioning]:
    """The prompts' text states, as `LatentConsistencyModelPipeline` encodes them: no null prompt, since the
    teacher's guidance was distilled into the model (`guidance_inputs`); the unconditional branch is never run."""
    cond, _ = pipeline.encode_prompt([p["prompt"] for p in prompts], device, 1, False)
    return {"encoder_hidden_states": cond}, {"encoder_hidden_states": cond}


def _lcm_guidance(pipeline, scales: torch.Tensor) -> Conditioning:
    """`timestep_cond`: the embedding of w = scale - 1, as LatentConsistencyModelPipeline makes it."""
    embedding = pipeline.get_guidance_scale_embedding(scales - 1, embedding_dim=pipeline.unet.config.time_cond_proj_dim)
    return {"timestep_cond": embedding.to(scales.device, pipeline.unet.dtype)}


def _flux_guidance(pipeline, scales: torch.Tensor) -> Conditioning:
    """FluxPipeline's `guidance`: the scale itself, one float32 per row."""
    return {"guidance": scales}


def _no_schedule_options(pipeline, latent_shape: tuple[int, ...], steps: int | None = None) -> dict:
    return {}


def _no_embedded_guidance(pipeline) -> bool:
    return False


@dataclass(frozen=True)
class Family:
    name: str
    encode: Callable[..., tuple[Conditioning, Conditioning]]
    latent_shape: Callable[..., tuple[int, ...]]
    decode: Callable[..., torch.Tensor]
    backbone: Callable[..., torch.nn.Module]
    pipelines: tuple[str, ...]  # diffusers pipeline class names of this family
    call: Callable[..., torch.Tensor] = evaluate
    schedule_options: Callable[..., dict] = _no_schedule_options
    embedded_guidance: Callable[..., bool] = _no_embedded_guidance
    classifier_free: bool = True  # encode gives a real null prompt, so guidance != 1 can run as a CFG pair
    # The model's guidance inputs for a batch of scales (float32, one per row), where it embeds guidance.
    guidance_input: Callable[..., Conditioning] = _flux_guidance


FAMILIES: dict[str, Family] = {
    "sd": Family("sd", _sd_encode, _unet_latent_shape, _vae_decode, lambda p: p.unet,
                 ("StableDiffusionPipeline",)),
    "sdxl": Family("sdxl", _sdxl_encode, _unet_latent_shape, _sdxl_decode, lambda p: p.unet,
                   ("StableDiffusionXLPipeline",)),
    "dit": Family("dit", _dit_encode, _transformer_latent_shape, _vae_decode, lambda p: p.transformer,
                  ("DiTPipeline",)),
    "flux": Family("flux", _flux_encode, _flux_latent_shape, _flux_decode, lambda p: p.transformer, ("FluxPipeline",),
                   call=_flux_call, schedule_options=_flux_schedule,
                   embedded_guidance=lambda p: bool(p.transformer.config.guidance_embeds), classifier_free=False),
    "sd3": Family("sd3", _sd3_encode, _transformer_latent_shape, _shifted_vae_decode, lambda p: p.transformer,
                  ("StableDiffusion3Pipeline",), call=_sd3_call, schedule_options=_sd3_schedule),
    "lcm": Family("lcm", _lcm_encode, _unet_latent_shape, _vae_decode, lambda p: p.unet, ("LatentConsistencyModelPipeline",),
                  embedded_guidance=lambda p: p.unet.config.time_cond_proj_dim is not None, classifier_free=False,
                  guidance_input=_lcm_guidance),
    "pixart": Family("pixart", _pixart_encode, _transformer_latent_shape, _vae_decode, lambda p: p.transformer,
                     ("PixArtSigmaPipeline",), call=_pixart_call),
}


def guidance_inputs(family: Family, pipeline, cond: Conditioning, uncond: Conditioning,
                    guidance: float) -> tuple[Conditioning, Conditioning, float]:
    """(cond, uncond, the loop's guidance) for a guidance scale.

    A guidance-distilled model (FLUX.1-dev, an LCM with a guidance embedding) takes the scale as an input, in the
    form its family's `guidance_input` gives, and the loop runs at guidance 1: one evaluation per step, no CFG pair.
    Otherwise the inputs are returned unchanged and the loop runs classifier-free guidance at `guidance`,
    which a family without a null prompt (FLUX.1-schnell) cannot do.
    """
    if family.embedded_guidance(pipeline):
        def with_scale(c: Conditioning) -> Conditioning:
            rows = tree_leaves(c)[0]
            scales = torch.full((rows.shape[0],), float(guidance), dtype=torch.float32, device=rows.device)
            return {**c, **family.guidance_input(pipeline, scales)}

        return with_scale(cond), with_scale(uncond), 1.0
    if not family.classifier_free and guidance != 1.0:
        raise ValueError(f"{type(pipeline).__name__} ({family.name} family) without guidance embeddings has no "
                         f"classifier-free guidance here: guidance must be 1.0, got {guidance}")
    return cond, uncond, guidance


def family_of(pipeline) -> Family:
    kind = type(pipeline).__name__
    for family in FAMILIES.values():
        if kind in family.pipelines:
            return family
    known = sorted(name for f in FAMILIES.values() for name in f.pipelines)
    raise ValueError(f"no pipeline family for {kind}; supported pipelines: {known}")
