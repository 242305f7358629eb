"""Model entries -> local diffusers folders -> pipelines ready to sample.

A toy entry's folder is trained by the DAG (see `diffscale.toyworld`); a local entry's folder is a
manifest naming an existing pipeline folder, with the hashes of its weights, so that the cache notices
when the weights change.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

MANIFEST = "diffscale-source.json"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


UNSAFE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")  # pickled weights: never loaded


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix in (".safetensors",) + UNSAFE_SUFFIXES)


def prepare_local(entry: dict, out: Path) -> dict:
    """Record an existing diffusers folder; refuse anything but safetensors weights."""
    folder = Path(entry["path"]).expanduser().resolve()
    if not (folder / "model_index.json").exists():
        raise FileNotFoundError(f"{folder} is not a diffusers pipeline folder (no model_index.json)")
    unsafe = [str(p.relative_to(folder)) for p in weight_files(folder) if p.suffix != ".safetensors"]
    if unsafe:
        raise ValueError(f"{folder}: only safetensors weights are accepted; found {unsafe}")
    manifest = {
        "source": "local",
        "path": str(folder),
        "files": {str(p.relative_to(folder)): sha256_of(p) for p in weight_files(folder)},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def resolve_folder(model_dir: Path) -> Path:
    """The diffusers folder behind a model directory of the DAG."""
    manifest = Path(model_dir) / MANIFEST
    if manifest.exists():
        folder = Path(json.loads(manifest.read_text())["path"])
        # A fetched folder lives inside the model directory and is recorded relative to it (see models.hub).
        return folder if folder.is_absolute() else Path(model_dir) / folder
    return Path(model_dir)


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda was requested but torch sees no CUDA device; use device: auto or cpu")
    return torch.device(requested)


def load_pipeline(model_dir: Path, device: torch.device, dtype: str = "float32") -> DiffusionPipeline:
    """Load offline from safetensors; remote code is never trusted."""
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    pipeline = DiffusionPipeline.from_pretrained(
        resolve_folder(model_dir), dtype=DTYPES[dtype], use_safetensors=True, local_files_only=True
    )
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)
