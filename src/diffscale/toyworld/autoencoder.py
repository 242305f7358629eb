"""The toy autoencoder: a diffusers AutoencoderKL that maps 32x32x3 images to 8x8x4 latents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL

from diffscale.toyworld.training import to_unit_range, train


def build(width: int) -> AutoencoderKL:
    """Three resolution levels (32 -> 16 -> 8), four latent channels, as in Stable Diffusion's VAE."""
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(width, 2 * width, 2 * width),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def foreground_weights(x: torch.Tensor, boost: float = 8.0) -> torch.Tensor:
    """Objects cover a tenth of the pixels; weigh them up so the decoder cannot settle for background."""
    background = x[:, :, :1, :1]
    return 1.0 + boost * ((x - background).abs().amax(1, keepdim=True) > 0.1).float()


def fit(images: np.ndarray, width: int, steps: int, batch_size: int, lr: float, kl_weight: float, seed: int):
    """Train with L1 reconstruction plus a small KL term; set `scaling_factor` to unit latent std."""
    torch.manual_seed(seed)
    vae = build(width)
    data = to_unit_range(images)

    def loss(idx):
        x = data[idx]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        return (foreground_weights(x) * (recon - x).abs()).mean() + kl_weight * posterior.kl().mean()

    losses, ledger = train(vae.parameters(), loss, len(data), steps, batch_size, lr, seed, desc="autoencoder")
    vae.eval()
    with torch.no_grad():
        probe = data[: min(len(data), 1024)]
        latents = vae.encode(probe).latent_dist.mode()
        l1 = (vae.decode(latents).sample - probe).abs().mean().item()
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    return vae, {"l1": l1, "final_loss": float(np.mean(losses[-20:])), "latent_std": float(latents.std())}, ledger


def save(vae: AutoencoderKL, out: Path) -> None:
    vae.save_pretrained(out, safe_serialization=True)
