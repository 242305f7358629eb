"""Benchmark: how far a finished toy study is from the denoiser compute its grid requires, per model.

Method: RUN is a finished study's results folder (e.g. the kept clone of `cold_study.py --keep`:
`.../clone/results/default`). For each toy denoiser under RUN/models, its trained UNet (safetensors) is loaded
and its forward throughput measured on this machine (rows per second at a batch of 512 rows, i.e. 256 images
with their classifier-free-guidance pair, the sampling batch; random latents and text states; 1 thread, the
jobs' setting). The rows the study's cells need come from RUN/metrics.csv (NFEs per image x images, per cell:
search candidates, verifier-guided re-noising and particles included), so the sampling bound of a model is
rows / throughput: what its sampling jobs would cost if they did nothing but denoiser forward passes. The
training bound is the training ledger's in-process seconds (the optimisation steps alone). Both are set
against the jobs' CPU-seconds from Snakemake's `benchmark:` files (RUN/benchmarks), with the other rules'
CPU-seconds, to say what is left to remove and what cannot be without changing the study's work.
Run: `python benchmarks/compute_bound.py RUN [--cores 2]` (about a minute).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import pandas as pd
import torch
from diffusers import UNet2DConditionModel
from runs import forward_rows_per_second, job_benchmarks

ROWS = 512  # the sampling batch: 256 images and their CFG pair


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a finished study's results folder, e.g. results/default")
    parser.add_argument("--cores", type=int, default=2, help="cores the study runs on (for the wall-time floor)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cells = pd.read_csv(args.run / "metrics.csv").drop_duplicates("cell")
    rows = (cells["nfe_per_image"] * cells["n"]).groupby(cells["model"]).sum()
    jobs = {job: float(row["cpu_time"]) for job, row in job_benchmarks(args.run).items()}
    sampled = defaultdict(float)
    for (rule, key), seconds in jobs.items():
        if rule == "sample":
            sampled[key.split("__")[0]] += seconds
    table = []
    for model in sorted(rows.index, key=lambda m: cells.loc[cells["model"] == m, "params"].iloc[0]):
        folder = args.run / "models" / model
        rate = forward_rows_per_second(UNet2DConditionModel.from_pretrained(folder / "unet").eval(), ROWS, 5)
        ledger = json.loads((folder / "training-ledger.json").read_text())
        table.append({"model": model, "rows": int(rows[model]), "rows_per_s": round(rate),
                      "sampling_bound_s": rows[model] / rate, "sampling_jobs_cpu_s": sampled[model],
                      "training_in_process_s": ledger["seconds"], "model_job_cpu_s": jobs.get(("model", model), 0.0)})
    table = pd.DataFrame(table)
    print(table.round(0).to_string(index=False))
    bound = table["sampling_bound_s"].sum() + table["training_in_process_s"].sum()
    denoiser_jobs = table["sampling_jobs_cpu_s"].sum() + table["model_job_cpu_s"].sum()
    rest = {rule: s for rule, s in pd.Series(jobs).groupby(level=0).sum().items() if rule not in ("sample", "model")}
    total = denoiser_jobs + sum(rest.values())
    print(f"\ndenoiser passes the grid requires (sampling bound + training steps): {bound:,.0f} CPU-s; "
          f"their jobs took {denoiser_jobs:,.0f} CPU-s ({denoiser_jobs / bound:.2f}x)")
    print("other rules, CPU-s: " + ", ".join(f"{rule} {s:,.0f}" for rule, s in sorted(rest.items(), key=lambda r: -r[1])))
    print(f"all jobs: {total:,.0f} CPU-s; on {args.cores} cores the denoiser passes alone need at least "
          f"{bound / args.cores / 60:.1f} min and the study as run at least {total / args.cores / 60:.1f} min")


if __name__ == "__main__":
    main()
