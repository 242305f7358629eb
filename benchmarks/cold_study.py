"""Benchmark: the default study run cold, as a new user runs it, with the machine it ran on.

Method: `git clone` of this checkout's HEAD into a temporary directory, `snakemake --cores N` on the default
study (`params.yaml`) with nothing built, then the same command again (the no-op rerun) and
`snakemake -n --configfile config/ldm-scaling.yaml` (building the largest DAG). Reported:
  - the wall time of each, and the cold run's CPU-seconds (user + sys of Snakemake and every job);
  - per rule: jobs, summed job wall seconds and CPU-seconds (Snakemake's `benchmark:` files), and when its
    first job started (from Snakemake's log), which shows how long sampling waited for the toy world;
  - a calibration figure measured in the same run: the toy w40 denoiser's forward throughput (random
    weights, batch 64 with classifier-free guidance, 1 thread), so that machines can be compared;
  - the CPU model and whether it has AVX-512 (`lscpu`).
Run: `python benchmarks/cold_study.py [--cores 2] [--keep]` (the cold run takes most of the time).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from runs import REPO, children_cpu_seconds, forward_rows_per_second, job_benchmarks, timed


def machine() -> str:
    fields = dict(re.findall(r"^([^:]+):\s*(.*)$", subprocess.run(["lscpu"], capture_output=True, text=True).stdout,
                             flags=re.MULTILINE))
    isa = "AVX-512" if "avx512f" in fields.get("Flags", "") else "AVX2" if "avx2" in fields.get("Flags", "") else "no AVX2"
    return f"{fields.get('Model name', '?')}, {os.cpu_count()} CPUs, {isa}"


def calibration(threads: int = 1, batch: int = 64, repeats: int = 5) -> float:
    """Forward passes of the toy w40 denoiser per second, in images (a CFG pair counts once)."""
    import torch

    from diffscale.toyworld.denoiser import build

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return forward_rows_per_second(build(40, cross_attention_dim=64).eval(), 2 * batch, repeats) / 2


def rule_starts(log: Path, started: float) -> dict[str, float]:
    """Seconds from the run's start to each rule's first job, read from Snakemake's log."""
    first = {}
    for stamp, rule in re.findall(r"^\[(\w{3} \w{3} +\d+ [\d:]+ \d{4})\]\n(?:local)?rule (\w+):", log.read_text(),
                                  flags=re.MULTILINE):
        seconds = datetime.strptime(stamp, "%a %b %d %H:%M:%S %Y").timestamp() - started
        first.setdefault(rule, max(seconds, 0.0))
    return first


def per_rule(study: Path) -> dict[str, dict]:
    rules = {}
    for (rule, _), row in job_benchmarks(study).items():
        entry = rules.setdefault(rule, {"jobs": 0, "wall": 0.0, "cpu": 0.0})
        entry["jobs"] += 1
        entry["wall"] += float(row["s"])
        entry["cpu"] += float(row["cpu_time"])
    return rules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--keep", action="store_true", help="keep the temporary clone (its path is printed)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"calibration: toy w40 denoiser forward, {calibration():.0f} images/s (batch 64 with CFG, 1 thread)")
    work = Path(tempfile.mkdtemp(prefix="diffscale-cold-")) / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(work)], check=True)
    snakemake = [sys.executable, "-m", "snakemake", "--cores", str(args.cores)]
    started, cpu_before = time.time(), children_cpu_seconds()
    cold = timed(snakemake, work)
    cpu = children_cpu_seconds() - cpu_before
    noop = timed(snakemake, work)
    dry = timed([sys.executable, "-m", "snakemake", "-n", "--configfile", "config/ldm-scaling.yaml"], work)
    cold_log = min((work / ".snakemake" / "log").glob("*.snakemake.log"))  # named by start time: the first run
    starts = rule_starts(cold_log, started)
    rules = per_rule(work / "results" / "default")
    print(f"\ncold run: {cold / 60:.1f} min wall, {cpu:.0f} CPU-s ({cpu / cold:.2f} cores busy on average)")
    print(f"no-op rerun: {noop:.1f} s; `snakemake -n` on config/ldm-scaling.yaml: {dry:.1f} s\n")
    print(f"{'rule':<20}{'jobs':>6}{'job wall s':>12}{'CPU-s':>9}{'share':>8}{'first job at':>14}")
    total = sum(r["cpu"] for r in rules.values())
    for name, r in sorted(rules.items(), key=lambda item: -item[1]["cpu"]):
        at = f"{starts[name]:.0f} s" if name in starts else "-"
        print(f"{name:<20}{r['jobs']:>6}{r['wall']:>12.0f}{r['cpu']:>9.0f}{r['cpu'] / total:>8.0%}{at:>14}")
    if args.keep:
        print(f"\nkept: {work} (the cold run's Snakemake log: {cold_log})")
    else:
        shutil.rmtree(work.parent)


if __name__ == "__main__":
    main()
