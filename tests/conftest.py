"""Shared fixtures: the repository root and a tiny random denoiser for sampling tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_unet():
    from diffscale.toyworld.denoiser import build

    torch.manual_seed(0)
    return build(width=8, cross_attention_dim=16).eval()
