"""The oracle: an attribute classifier that reads each slot of a toy image (layout, colours, shapes).

It knows the ground truth of the toy world, so it gives exact compositional accuracy, an IS-like
confidence (the probability it assigns to what the prompt asked for), and its penultimate features
stand in for Inception's in FID and KID (registered with torch-fidelity as a feature extractor).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from diffscale.toyworld.scenes import IMAGE_SIZE, SLOTS
from diffscale.toyworld.training import TrainingLedger, to_unit_range, train


class AttributeClassifier(nn.Module):
    """Two strided convolutions keep the 8x8 layout (no global pooling: position is a label)."""

    def __init__(self, width: int, feature_dim: int = 128):
        super().__init__()
        self.config = {"width": width, "feature_dim": feature_dim}
        self.trunk = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (IMAGE_SIZE // 4) ** 2, feature_dim), nn.SiLU(),
        )
        self.heads = nn.ModuleList(nn.Linear(feature_dim, len(classes)) for classes in SLOTS.values())

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features of images in [-1, 1]."""
        return self.trunk(images)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Logits per slot, in the order of `SLOTS`."""
        features = self.features(images)
        return [head(features) for head in self.heads]

    @torch.no_grad()
    def slot_probabilities(self, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """N x slots: the probability of each slot's target class."""
        logits = self(images)
        return torch.stack([slot.softmax(-1).gather(1, targets[:, k : k + 1])[:, 0] for k, slot in enumerate(logits)], 1)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        return torch.stack([slot.argmax(-1) for slot in self(images)], 1)


def fit(images: np.ndarray, labels: np.ndarray, width: int, steps: int, batch_size: int, lr: float, seed: int,
        architecture: type[nn.Module] = AttributeClassifier, desc: str = "oracle") -> tuple[nn.Module, TrainingLedger]:
    """Train a slot classifier (the oracle's architecture, or another one such as the judge's) and its ledger."""
    torch.manual_seed(seed)
    model = architecture(width)
    data, targets = to_unit_range(images), torch.from_numpy(labels)

    def loss(idx):
        logits = model(data[idx])
        return sum(nn.functional.cross_entropy(slot, targets[idx, k]) for k, slot in enumerate(logits))

    _, ledger = train(model.parameters(), loss, len(data), steps, batch_size, lr, seed, desc=desc)
    return model.eval(), ledger


def accuracy(model: AttributeClassifier, images: np.ndarray, labels: np.ndarray) -> dict:
    predicted = model.predict(to_unit_range(images))
    correct = predicted == torch.from_numpy(labels)
    per_slot = {slot: float(correct[:, k].float().mean()) for k, slot in enumerate(SLOTS)}
    return {"all_slots": float(correct.all(1).float().mean()), **per_slot}


def save(model: nn.Module, out: Path, report: dict, name: str = "oracle") -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out / f"{name}.safetensors"))
    meta = {"architecture": name, "config": model.config, "slots": SLOTS, "heldout_accuracy": report}
    (out / f"{name}.json").write_text(json.dumps(meta, indent=2))


def load(path: Path, architecture: type[nn.Module] = AttributeClassifier, name: str = "oracle") -> nn.Module:
    meta = json.loads((Path(path) / f"{name}.json").read_text())
    model = architecture(**meta["config"])
    model.load_state_dict(load_file(str(Path(path) / f"{name}.safetensors")))
    return model.eval()
