"""Prompt sets: JSON lines of {"id", "prompt", ...}, the unit a cell's images are paired on."""

from __future__ import annotations

import json
from pathlib import Path

from diffscale.atomic import write_text


def write(path: Path, prompts: list[dict]) -> None:
    write_text(path, "".join(json.dumps(p, sort_keys=True) + "\n" for p in prompts))


def imagenet_classes(size: int, seed: int) -> list[dict]:
    """`size` ImageNet classes (a seeded choice) for class-conditional models: the label and its class id.

    Names come with torchvision (no download). A name two classes share (older lists had "crane" twice)
    is left out, so a name identifies its class for verifiers that read prompts.
    """
    import random

    from torchvision.models import ResNet50_Weights

    names = ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
    unique = [i for i, n in enumerate(names) if names.count(n) == 1]
    if size > len(unique):
        raise ValueError(f"imagenet-classes: size {size} is more than the {len(unique)} classes with unique names")
    chosen = sorted(random.Random(seed).sample(unique, size))
    return [{"id": i, "prompt": names[c], "labels": {"class_id": c}} for i, c in enumerate(chosen)]


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
