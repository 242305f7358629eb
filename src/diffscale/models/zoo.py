"""Model folders -> pipelines ready to sample, on the device the study asks for.

A toy entry's folder is trained by the DAG (see `diffscale.toyworld`); a local or hub entry's folder is
resolved through its source record (`diffscale.models.source`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import logging as diffusers_logging
from transformers.utils import logging as transformers_logging

from diffscale.models.source import resolve_folder

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
