"""The toy world's image sets on disk: the training dataset and the FID reference, each a folder holding
its arrays (`arrays.npz`: images, slot labels, captions) and its integrity manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from diffscale.atomic import atomic_directory
from diffscale.manifest import verified

ARRAYS = "arrays.npz"


def save_arrays(folder: Path, images: np.ndarray, labels: np.ndarray, captions: list[str]) -> None:
    with atomic_directory(folder) as out:
        np.savez_compressed(out / ARRAYS, images=images, labels=labels, captions=np.array(captions))


def load_arrays(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images, slot labels and captions, checked against their manifest."""
    with np.load(verified(folder) / ARRAYS) as data:
        return data["images"], data["labels"], [str(c) for c in data["captions"]]
