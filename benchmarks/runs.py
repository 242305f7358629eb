"""What the benchmarks that run the workflow share: the checkout, this environment's tools, timed commands."""

from __future__ import annotations

import csv
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ENV = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall seconds of a command that must succeed (the benchmark stops with its output if it fails). A checkout
    `cwd` runs its own `src`: with an editable install the jobs would import the installed tree's code, so an
    edit there during a benchmark would change what the benchmark's clone computes."""
    env = ENV | {"PYTHONPATH": str(Path(cwd) / "src")} if (Path(cwd) / "src" / "diffscale").is_dir() else ENV
    started = time.perf_counter()
    result = subprocess.run(list(map(str, cmd)), cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")
    return time.perf_counter() - started


def children_cpu_seconds() -> float:
    """User + system CPU-seconds of every finished child process (and theirs) so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def job_benchmarks(study: Path) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, job key) -> the row of Snakemake's `benchmark:` file (`s`: wall seconds, `cpu_time`: CPU-seconds)."""
    return {(tsv.parent.name, tsv.stem): next(csv.DictReader(tsv.open(), delimiter="\t"))
            for tsv in sorted((study / "benchmarks").glob("*/*.tsv"))}


def forward_rows_per_second(unet: Any, rows: int, repeats: int) -> float:
    """Rows per second through a UNet2DConditionModel's forward (random latents, 16 text tokens, t = 500; the
    current torch thread count), after one warm-up pass."""
    import torch

    config = unet.config
    latents = torch.randn(rows, config.in_channels, config.sample_size, config.sample_size)
    text = torch.randn(rows, 16, config.cross_attention_dim)
    timestep = torch.full((rows,), 500)
    extra = {"timestep_cond": torch.zeros(rows, config.time_cond_proj_dim)} if config.time_cond_proj_dim else {}
    with torch.no_grad():
        unet(latents, timestep, encoder_hidden_states=text, **extra)
        started = time.perf_counter()
        for _ in range(repeats):
            unet(latents, timestep, encoder_hidden_states=text, **extra)
    return rows * repeats / (time.perf_counter() - started)
