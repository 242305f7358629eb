"""Benchmark: one sampling job per block of cells vs one job (process) per cell.

Method: build the smoke study's toy world and models in a temporary directory (Snakemake), then sample
the same K cells of one block twice, each from a cold Python process as the engines start jobs:
  baseline  K processes, one per cell (what a per-cell rule costs);
  block     1 process that loads the model once and samples all K cells (what `diffscale sample --block` does).
Reported: wall seconds of each, their ratio, and the share of the baseline spent outside sampling
(process start-up, imports, model loading). Run: `python benchmarks/block_vs_cell_jobs.py [--steps 2 5 10 20 50]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE_ONE = """
import sys
from diffscale.config import load
from diffscale.cells import Cell, Paths
from diffscale.sampling.block import sample_block
params = load(sys.argv[1]); paths = Paths.of(params)
cells = [Cell.from_id(c) for c in sys.argv[2:]]
sample_block(params, cells[0].block, cells, paths, progress=False)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument("--guidance", type=float, nargs="+", default=[1.5, 3.0])
    parser.add_argument("--prompts", type=int, default=64)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="diffscale-bench-"))
    study = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    study["prompt_sets"]["toy-captions"]["size"] = args.prompts
    study["report"] = {"reference_steps": max(args.steps)}
    study["grids"] = [{"models": ["toy-w16"], "samplers": ["ddim"], "steps": args.steps, "guidance": args.guidance,
                       "prompt_sets": ["toy-captions"]}]
    study_file = work / "study.yaml"
    study_file.write_text(yaml.safe_dump(study))
    env = os.environ | {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    targets = ["results/smoke/models/toy-w16", "results/smoke/prompts/toy-captions.jsonl"]
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(work),
                    "--cores", "2", "--configfile", str(study_file)], check=True, env=env, capture_output=True)
    from diffscale.cells import expand
    from diffscale.config import resolve

    cells = [c.id for c in expand(resolve(study))]

    def timed(cell_groups: list[list[str]]) -> float:
        started = time.perf_counter()
        for group in cell_groups:
            subprocess.run([sys.executable, "-c", SAMPLE_ONE, str(study_file), *group], check=True, env=env, cwd=work)
        return time.perf_counter() - started

    baseline = timed([[c] for c in cells])
    block = timed([cells])
    # baseline = K (S + c), block = S + K c, with S the per-process start-up and loading, c the sampling.
    k = len(cells)
    startup = (baseline - block) / (k - 1)
    result = {
        "cells": k, "images_per_cell": args.prompts,
        "per_cell_jobs_seconds": round(baseline, 2), "block_job_seconds": round(block, 2),
        "speedup": round(baseline / block, 2),
        "startup_and_loading_seconds_per_process": round(startup, 2),
        "startup_share_of_per_cell_jobs": round(k * startup / baseline, 3),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
