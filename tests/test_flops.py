"""FLOPs per NFE from torch's counter, checked against a case small enough to count by hand."""

from __future__ import annotations

import pytest
import torch

from diffscale.models.flops import backbone_gflops_per_nfe


def text_states(tokens: int, width: int) -> dict:
    return {"encoder_hidden_states": torch.zeros(1, tokens, width)}


class TinyDenoiser(torch.nn.Module):
    """A 3x3 convolution over the latent plus a projection of the text states."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 8, 3, padding=1, bias=False)
        self.text = torch.nn.Linear(16, 8, bias=False)

    def forward(self, sample, timestep, encoder_hidden_states):
        return self.conv(sample) + self.text(encoder_hidden_states).mean(1)[:, :, None, None]


def test_flops_match_a_hand_count():
    # conv: 8 outputs x 8x8 positions x (4 inputs x 3x3) MACs; linear: 5 tokens x 16 x 8 MACs; FLOPs = 2 MACs.
    expected = 2 * (8 * 8 * 8 * 4 * 9) + 2 * (5 * 16 * 8)
    assert backbone_gflops_per_nfe(TinyDenoiser(), (4, 8, 8), text_states(5, 16)) * 1e9 == expected


def test_flops_grow_with_width(tiny_unet):
    from diffscale.toyworld.denoiser import build

    small = backbone_gflops_per_nfe(tiny_unet, (4, 8, 8), text_states(16, 16))
    large = backbone_gflops_per_nfe(build(width=16, cross_attention_dim=16), (4, 8, 8), text_states(16, 16))
    assert 2.5 < large / small < 4.5  # convolution cost grows ~ width^2


def test_the_recorded_architecture_costs_are_what_the_meta_device_counts():
    """Estimates read `architectures.json` (no torch while building the DAG). It records what counted it: today's
    code and libraries must be those (a changed config, counter, torch or diffusers), and counting one architecture
    again must give its row."""
    from diffscale.models.architectures import counted, counted_with, measure_architectures, recorded

    stale = "architectures.json is stale: python -m diffscale.models.architectures --write"
    assert recorded()["counted_with"] == counted_with(), stale
    tiny = "BK-SDM-Tiny (= Segmind tiny-sd)"
    assert measure_architectures({tiny}) == [row for row in counted() if row["model"] == tiny], stale


def test_the_text_to_image_transformers_cost_what_their_blocks_compute_by_hand():
    """Each transformer block computes 12 d^2 multiply-accumulates per token (attention projections 4 d^2, MLP
    8 d^2: FLUX's single-stream blocks fuse the same 12 d^2) and attention products 2 L^2 d over its L tokens;
    PixArt's blocks attend to 4096 image tokens and cross-attend to 300 text tokens. Embeddings and
    the output layer are left out, so the counts agree to 0.1%."""
    from diffscale.models.architectures import counted

    gflops = {r["model"]: r["gflops_per_nfe"] for r in counted()}

    def mmdit(blocks, width, tokens):
        return blocks * (24 * width**2 * tokens + 4 * tokens**2 * width) / 1e9

    image, d = 4096, 1152
    pixart = 28 * (2 * image * 14 * d**2 + 4 * image**2 * d + 2 * 300 * 2 * d**2 + 4 * image * 300 * d) / 1e9
    by_hand = {
        "FLUX.1-dev": mmdit(19 + 38, 3072, image + 512), "FLUX.1-schnell": mmdit(19 + 38, 3072, image + 256),
        "SD3 Medium": mmdit(24, 1536, image + 333), "SD3.5 Large": mmdit(38, 2432, image + 333),
        "SD3.5 Medium": mmdit(24, 1536, image + 333) + 13 * (8 * image * 1536**2 + 4 * image**2 * 1536) / 1e9,
        "PixArt-Sigma-XL/2-1024": pixart,
    }
    for model, expected in by_hand.items():
        assert gflops[model] == pytest.approx(expected, rel=1e-3), model
