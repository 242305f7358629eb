"""The judge: an independent attribute classifier that computes the compositional-accuracy metric.

Search optimises the oracle's probability (the `oracle` verifier), so a metric read by the oracle
would reward fooling it. The judge reads the same slots with another architecture (max pooling,
CoordConv coordinate channels so position stays readable, ReLU, its own widths and kernels) trained
from another seed, so an image that games the oracle's quirks does not game it. It has the oracle's
interface (`predict`, `slot_probabilities` on [-1, 1] images), so `metrics.compositional.per_image`
takes either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from diffscale.toyworld import oracle
from diffscale.toyworld.oracle import AttributeClassifier
from diffscale.toyworld.scenes import IMAGE_SIZE, SLOTS
from diffscale.toyworld.training import TrainingLedger


class CoordinateChannels(nn.Module):
    """CoordConv: append x and y in [-1, 1] as two input channels."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        ys = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([images, xs, ys], 1)


class JudgeClassifier(AttributeClassifier):
    """CoordConv + three conv/max-pool stages (32 -> 4) + an MLP trunk, one linear head per slot."""

    def __init__(self, width: int, feature_dim: int = 96):
        nn.Module.__init__(self)  # the oracle's readers (forward, predict, ...), another trunk
        self.config = {"width": width, "feature_dim": feature_dim}
        self.trunk = nn.Sequential(
            CoordinateChannels(),
            nn.Conv2d(5, width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(4 * width * (IMAGE_SIZE // 8) ** 2, feature_dim), nn.ReLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(feature_dim, len(classes)) for classes in SLOTS.values())


def fit(images: np.ndarray, labels: np.ndarray, width: int, steps: int, batch_size: int, lr: float,
        seed: int) -> tuple[JudgeClassifier, TrainingLedger]:
    return oracle.fit(images, labels, width, steps, batch_size, lr, seed, architecture=JudgeClassifier, desc="judge")


def save(model: JudgeClassifier, out: Path, report: dict) -> None:
    oracle.save(model, out, report, name="judge")


def load(path: Path) -> JudgeClassifier:
    return oracle.load(path, JudgeClassifier, name="judge")
