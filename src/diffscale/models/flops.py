"""Denoiser cost per function evaluation, counted by torch's own FLOP counter.

FLOPs = 2 x multiply-accumulates of the matmuls, convolutions and attention products of one
single-sample pass (norms, activations and other element-wise work are not counted, as in the papers).
The count depends only on shapes, so it can run on the meta device: `meta_twin(backbone)` rebuilds a
backbone from its config without weights, which is how `diffscale.models.architectures` costs the real
models without downloading them, and how a GPU run can cost its backbone without touching GPU memory.
"""

from __future__ import annotations

import torch
from torch.utils._pytree import tree_map
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count


def _cpu_flash_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                                  **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# On CPU, scaled_dot_product_attention runs `_scaled_dot_product_flash_attention_for_cpu` (and its backward),
# which torch's counter does not know (it counts the CUDA flash/efficient/cudnn kernels, and the meta device's
# bmm decomposition): without these the attention products would count 0 on CPU, forward and backward.
_CUSTOM = {}
if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu"):
    _CUSTOM[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_sdpa_flop
    _CUSTOM[torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_flash_sdpa_backward_flop


def flop_counter() -> FlopCounterMode:
    """torch's counter with the CPU attention kernel added: a context whose `get_total_flops()` counts every
    matmul, convolution and attention product run inside it, forward and backward (2 per multiply-accumulate)."""
    return FlopCounterMode(display=False, custom_mapping=_CUSTOM)


def count_flops(run) -> int:
    """FLOPs of everything `run()` computes (without gradients)."""
    counter = flop_counter()
    with torch.no_grad(), counter:
        run()
    return counter.get_total_flops()


def build_on_meta(cls, config: dict) -> torch.nn.Module:
    """A diffusers model built from its config on the meta device: shapes only, no weights, no memory."""
    with torch.device("meta"):
        model = cls.from_config(config)
    return model.to("meta").eval()  # buffers computed from numpy at init (DiT's position table) too


def meta_twin(module: torch.nn.Module) -> torch.nn.Module:
    """The same architecture as a loaded diffusers model (or its `torch.compile` wrapper), on the meta device."""
    module = getattr(module, "_orig_mod", module)
    return build_on_meta(type(module), dict(module.config))


def _place(cond: dict, device, dtype) -> dict:
    def move(x):
        if not torch.is_tensor(x):
            return x
        return x.to(device, dtype) if x.is_floating_point() else x.to(device)

    return tree_map(move, cond)


def backbone_gflops_per_nfe(backbone: torch.nn.Module, latent_shape: tuple[int, ...], cond_single: dict,
                            meta: bool = False, call=None) -> float:
    """GFLOPs of one single-sample pass (one NFE), made by `call(backbone, sample, t, cond_single)`.

    `call` is the pipeline family's `Family.call` (default `backbone(sample, t, **cond_single)`), so the pass
    counted is the one the sampling loop makes. `cond_single` is the family's conditioning for one sample
    (batch 1), e.g. `take(cond, torch.tensor([0]))` of what `Family.encode` returned, or
    `example_conditioning(backbone)`. With `meta=True` the pass runs on a weightless meta twin (same
    count, no compute, no device memory).

    Mei et al. count the UNet alone at the model's latent size, without text encoder, VAE or the CFG
    factor; the ledger applies NFE counts on top of this number.
    """
    model = meta_twin(backbone) if meta else backbone
    parameter = next(model.parameters())
    sample = torch.zeros((1, *latent_shape), dtype=parameter.dtype, device=parameter.device)
    timestep = torch.tensor([500], device=parameter.device)
    cond = _place(cond_single, parameter.device, parameter.dtype)
    call = call or (lambda module, x, t, c: module(x, t, **c))
    return count_flops(lambda: call(model, sample, timestep, cond)) / 1e9


def example_conditioning(backbone: torch.nn.Module, text_tokens: int = 77) -> dict:
    """A zero conditioning of batch 1 in the shape the backbone takes (`text_tokens` text tokens).

    UNet2DConditionModel: encoder states (+ SDXL's pooled text embedding and 6 time ids when its
    `addition_embed_type` is "text_time"); a class-conditional transformer (DiT): class 0; MMDiT (SD3, FLUX):
    joint text states and the pooled embedding (+ the guidance scale of a guidance-distilled FLUX); PixArt:
    T5 states and their attention mask.
    """
    config = backbone.config
    if getattr(config, "num_embeds_ada_norm", None) is not None and not getattr(config, "cross_attention_dim", None):
        return {"class_labels": torch.zeros(1, dtype=torch.long)}
    if getattr(config, "joint_attention_dim", None):
        cond = {"encoder_hidden_states": torch.zeros(1, text_tokens, config.joint_attention_dim),
                "pooled_projections": torch.zeros(1, config.pooled_projection_dim)}
        if getattr(config, "guidance_embeds", False):
            cond["guidance"] = torch.ones(1)
        return cond
    if getattr(config, "caption_channels", None):
        return {"encoder_hidden_states": torch.zeros(1, text_tokens, config.caption_channels),
                "encoder_attention_mask": torch.ones(1, text_tokens, dtype=torch.long)}
    cond = {"encoder_hidden_states": torch.zeros(1, text_tokens, config.cross_attention_dim)}
    if getattr(config, "addition_embed_type", None) == "text_time":
        time_ids = 6  # original size, crop corner, target size
        pooled = config.projection_class_embeddings_input_dim - time_ids * config.addition_time_embed_dim
        cond["added_cond_kwargs"] = {"text_embeds": torch.zeros(1, pooled), "time_ids": torch.zeros(1, time_ids)}
    return cond
