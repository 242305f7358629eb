"""The judge: an independent attribute classifier that computes the compositional-accuracy metric.

Search optimises the oracle's probability (the `oracle` verifier), so a metric read by the oracle
would reward fooling it. The judge reads the same slots with another architecture (max pooling,
CoordConv coordinate channels so position stays readable, ReLU, its own widths and kernels) trained
from another seed, so an image that games the oracle's quirks does not game it. It has the oracle's
interface (`predict`, `slot_probabilities` on [-1, 1] images), so `metrics.compositional.per_image`
takes either.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffscale.toyworld.oracle import AttributeClassifier
from diffscale.toyworld.scenes import IMAGE_SIZE, SLOTS
from diffscale.toyworld.training import to_unit_range, train

WEIGHTS, CONFIG = "judge.safetensors", "judge.json"


class CoordinateChannels(nn.Module):
    """CoordConv: append x and y in [-1, 1] as two input channels."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, _, h, w = images.shape
        ys = torch.linspace(-1, 1, h, device=images.device, dtype=images.dtype).view(1, 1, h, 1).expand(n, 1, h, w)
        xs = torch.linspace(-1, 1, w, device=images.device, dtype=images.dtype).view(1, 1, 1, w).expand(n, 1, h, w)
        return torch.cat([images, xs, ys], 1)


class JudgeClassifier(nn.Module):
    """CoordConv + three conv/max-pool stages (32 -> 4) + an MLP trunk, one linear head per slot."""

    def __init__(self, width: int, feature_dim: int = 96):
        super().__init__()
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

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Logits per slot, in the order of `SLOTS`."""
        features = self.features(images)
        return [head(features) for head in self.heads]

    # The oracle's readers only call `self(images)`: the same code serves both classifiers.
    slot_probabilities = AttributeClassifier.slot_probabilities
    predict = AttributeClassifier.predict


def fit(images: np.ndarray, labels: np.ndarray, width: int, steps: int, batch_size: int, lr: float, seed: int) -> JudgeClassifier:
    torch.manual_seed(seed)
    model = JudgeClassifier(width)
    data, targets = to_unit_range(images), torch.from_numpy(labels)

    def loss(idx):
        logits = model(data[idx])
        return sum(nn.functional.cross_entropy(l, targets[idx, k]) for k, l in enumerate(logits))

    train(model.parameters(), loss, len(data), steps, batch_size, lr, seed, desc="judge")
    return model.eval()


def save(model: JudgeClassifier, out: Path, report: dict) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out / WEIGHTS))
    meta = {"architecture": "judge", "config": model.config, "slots": SLOTS, "heldout_accuracy": report}
    (out / CONFIG).write_text(json.dumps(meta, indent=2))


def load(path: Path) -> JudgeClassifier:
    meta = json.loads((Path(path) / CONFIG).read_text())
    model = JudgeClassifier(**meta["config"])
    model.load_state_dict(load_file(str(Path(path) / WEIGHTS)))
    return model.eval()
