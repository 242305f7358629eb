"""oracle (toy world): the attribute classifier's probability of exactly what the prompt asks for.

The product over slots of the probability of the prompt's class: the same number as the
`oracle_confidence` metric (`metrics.compositional.per_image`), computed from tensors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F

from diffscale.metrics.compositional import prompt_targets
from diffscale.toyworld import oracle as toy_oracle
from diffscale.toyworld.scenes import IMAGE_SIZE, parse_caption
from diffscale.verifiers.base import Verifier, VerifierResources, register


@lru_cache(maxsize=4096)
def _labels(prompt: str) -> tuple[tuple[str, str], ...]:
    return tuple(parse_caption(prompt).labels().items())


def prompt_label_targets(prompts: list[str]) -> torch.Tensor:
    """N x slots class indices of what each toy prompt asks for."""
    return prompt_targets([dict(_labels(p)) for p in prompts])


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images at any size -> the toy classifiers' input: [-1, 1] at IMAGE_SIZE x IMAGE_SIZE."""
    if images.shape[-2:] != (IMAGE_SIZE, IMAGE_SIZE):
        images = F.interpolate(images, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", antialias=True, align_corners=False)
    return images * 2.0 - 1.0


def load_toy_oracle(resources: VerifierResources, path: str | Path | None, who: str):
    path = path if path is not None else resources.oracle
    if path is None:
        raise ValueError(f"{who}: needs the toy oracle, but the study provides none (resources.oracle is None)")
    return toy_oracle.load(Path(path))


@register("oracle")
class OracleVerifier(Verifier):
    """Options: `path` (an oracle folder; default: the study's toy oracle)."""

    def __init__(self, *, resources: VerifierResources, device="cpu", path: str | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        self.classifier = load_toy_oracle(resources, path, "oracle").to(self.device)

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        targets = prompt_label_targets(prompts).to(self.device)
        return self.classifier.slot_probabilities(to_classifier_input(images), targets).prod(1)
