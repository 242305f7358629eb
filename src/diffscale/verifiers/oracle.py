"""oracle (toy world): the attribute classifier's probability of exactly what the prompt asks for.

The product over slots of the probability of the prompt's class: the same number as the
`oracle_confidence` metric (`metrics.compositional.per_image`), computed from tensors.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from diffscale import manifest
from diffscale.lazy import lazy_import
from diffscale.verifiers.base import BATCH_SIZE_OPTION, Verifier, VerifierResources, register

torch = lazy_import("torch")
compositional = lazy_import("diffscale.metrics.compositional")
scenes = lazy_import("diffscale.toyworld.scenes")
toy_oracle = lazy_import("diffscale.toyworld.oracle")


@lru_cache(maxsize=4096)
def _labels(prompt: str) -> tuple[tuple[str, str], ...]:
    return tuple(scenes.parse_caption(prompt).labels().items())


def prompt_label_targets(prompts: list[str]) -> torch.Tensor:
    """N x slots class indices of what each toy prompt asks for."""
    return compositional.prompt_targets([dict(_labels(p)) for p in prompts])


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] images at any size -> the toy classifiers' input: [-1, 1] at IMAGE_SIZE x IMAGE_SIZE."""
    size = scenes.IMAGE_SIZE
    if images.shape[-2:] != (size, size):
        images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                                 align_corners=False)
    return images * 2.0 - 1.0


def load_toy_oracle(resources: VerifierResources, path: str | Path | None, who: str):
    if path is not None:
        return toy_oracle.load(Path(path))
    if resources.oracle is None:
        raise ValueError(f"{who}: needs the toy oracle, but the study provides none (resources.oracle is None)")
    return toy_oracle.load(manifest.verified(resources.oracle))


@register("oracle")
class OracleVerifier(Verifier):
    """The toy attribute classifier's probability of exactly the scene the prompt asks for.

    Options: `path` (an oracle folder; default: the study's toy oracle)."""

    options = {**BATCH_SIZE_OPTION, "path": {"type": "string", "description": "An oracle folder; default: the study's toy oracle."}}

    @classmethod
    def toy_components(cls, options: dict) -> set[str]:
        return set() if options.get("path") else {"oracle"}

    def __init__(self, *, resources: VerifierResources, device="cpu", path: str | None = None, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        self.classifier = load_toy_oracle(resources, path, "oracle").to(self.device)

    def _forward(self, images, prompts, intermediate) -> torch.Tensor:
        targets = prompt_label_targets(prompts).to(self.device)
        return self.classifier.slot_probabilities(to_classifier_input(images), targets).prod(1)
