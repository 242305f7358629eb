"""Compositional accuracy and oracle confidence: does the image show what the prompt asked for?"""

from __future__ import annotations

import numpy as np
import torch

from diffscale.toyworld.oracle import AttributeClassifier
from diffscale.toyworld.scenes import SLOTS
from diffscale.toyworld.training import to_unit_range


def prompt_targets(labels: list[dict]) -> torch.Tensor:
    """N x slots class indices of what each prompt asks for."""
    return torch.tensor([[SLOTS[slot].index(lab[slot]) for slot in SLOTS] for lab in labels])


@torch.no_grad()
def per_image(classifier: AttributeClassifier, images_nhwc: np.ndarray, labels: list[dict]) -> dict[str, np.ndarray]:
    """Per image, as `classifier` reads it: `correct`, every slot read as asked (0/1), and `probability`, the
    probability it gives the asked-for scene (the product of each slot's probability of its asked class)."""
    pixels, targets = to_unit_range(images_nhwc), prompt_targets(labels)
    correct = (classifier.predict(pixels) == targets).all(1)
    probability = classifier.slot_probabilities(pixels, targets).prod(1)
    return {"correct": correct.double().numpy(), "probability": probability.double().numpy()}
