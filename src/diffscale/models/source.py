"""Where a model's diffusers folder comes from, recorded beside it: a fetched hub revision or a local folder.

A local entry's model directory holds only this record (`diffscale-source.json`): the folder's path and
the sha256 of its weights, so the cache notices when they change. Only safetensors weights are accepted.
"""

from __future__ import annotations

import json
from pathlib import Path

from diffscale.manifest import sha256_of

MANIFEST = "diffscale-source.json"
UNSAFE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth")  # pickled weights: never loaded


def weight_files(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.suffix in (".safetensors",) + UNSAFE_SUFFIXES)


def local_folder_problem(entry: dict) -> str | None:
    """Why a local entry's folder cannot be used, or None: checked when the study is validated."""
    folder = Path(entry["path"]).expanduser()
    if not folder.is_dir():
        return f"{folder} does not exist or is not a folder"
    if not (folder / "model_index.json").exists():
        return f"{folder} is not a diffusers pipeline folder (no model_index.json)"
    unsafe = [str(p.relative_to(folder)) for p in weight_files(folder) if p.suffix != ".safetensors"]
    if unsafe:
        return f"{folder}: only safetensors weights are accepted (pickled weights can run code); found {unsafe}"
    return None


def prepare_local(entry: dict, out: Path) -> dict:
    """Record an existing diffusers folder; refuse anything but safetensors weights."""
    problem = local_folder_problem(entry)
    if problem:
        raise ValueError(problem)
    folder = Path(entry["path"]).expanduser().resolve()
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
