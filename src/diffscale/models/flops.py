"""Denoiser cost per function evaluation, counted by torch's own FLOP counter."""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode


@torch.no_grad()
def denoiser_gflops_per_nfe(unet: torch.nn.Module, latent_shape: tuple[int, ...], context_shape: tuple[int, ...]) -> float:
    """GFLOPs of one single-sample UNet pass (FLOPs = 2 x multiply-accumulates, as the papers count).

    Mei et al. count the UNet alone at the model's latent size, without text encoder, VAE or the CFG
    factor; the ledger applies NFE counts on top of this number.
    """
    parameter = next(unet.parameters())
    sample = torch.zeros((1, *latent_shape), dtype=parameter.dtype, device=parameter.device)
    context = torch.zeros((1, *context_shape), dtype=parameter.dtype, device=parameter.device)
    timestep = torch.tensor([500], device=parameter.device)
    counter = FlopCounterMode(display=False)
    with counter:
        unet(sample, timestep, encoder_hidden_states=context)
    return counter.get_total_flops() / 1e9
