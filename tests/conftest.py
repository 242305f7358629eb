"""Shared fixtures: the repository root, a tiny random denoiser for sampling tests, and one uninterrupted
Snakemake run of the smoke study that the end-to-end tests compare against."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_unet():
    from diffscale.toyworld.denoiser import build

    torch.manual_seed(0)
    return build(width=8, cross_attention_dim=16).eval()


@pytest.fixture(scope="session")
def smoke_run(repo, tmp_path_factory) -> Path:
    """A folder with the smoke study (`study.yaml`) run to completion by Snakemake. Shared: read it, or copy
    it with `cp -a` (which keeps the cell cache's hard links) to change it."""
    work = tmp_path_factory.mktemp("smoke-run")
    shutil.copy(repo / "config" / "smoke.yaml", work / "study.yaml")
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), "-d", str(work),
         "--configfile", str(work / "study.yaml"), "--cores", "2"],
        cwd=work, env=os.environ | {"PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")},
        capture_output=True, text=True)
    assert result.returncode == 0, f"the smoke study failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return work
