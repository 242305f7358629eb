"""Benchmark: what an edit of the default study costs, against computing the same new cells from scratch.

Method, in a temporary copy of the study (Snakemake, 2 cores):
  cold         `snakemake --cores 2` on the default study (the toy world, 217 cells);
  no-op        the same command again, and `dvc repro` after DVC has run the study once in the same tree
               (Snakemake's and DVC's fixed cost of finding that nothing changed);
  incremental  guidance 4.0 added to the `ddim` grid (25 new cells), the same command;
  same cells   those 25 cells computed from scratch: their cache entries deleted, their blocks forced
               (`--forcerun` of their blocks' sample and score jobs, which find every other cell of
               the block in the cache), with the toy world and models in place.
Reported: the wall seconds of each, the cells each computed (from the cell cache's log), and the ratio
incremental / same cells, which is 1 when an edit costs only its new cells (before the cell cache a block
job recomputed all 100 cells of its 5 guidance-by-steps points: a ratio near 4).
Run: `python benchmarks/incremental_study.py [--study params.yaml] [--skip-dvc]` (about 40 minutes).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from runs import BIN, REPO, children_cpu_seconds, timed

from diffscale.cells import Paths, expand
from diffscale.config import load


def computed(work: Path) -> list[dict]:
    log = work / "results" / ".cache" / "computed.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", default=str(REPO / "params.yaml"))
    parser.add_argument("--grid", default="ddim", help="the grid that gains a guidance value")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--skip-dvc", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="diffscale-incremental-"))
    study = work / "params.yaml"
    shutil.copy(args.study, study)
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(work), "--cores", "2"]
    rows = []

    def step(name: str, cmd: list[str]) -> float:
        before = len(computed(work))
        seconds = timed(cmd, work)
        new = computed(work)[before:]
        rows.append((name, seconds, sum(e["kind"] == "samples" for e in new), sum(e["kind"] == "scores" for e in new)))
        print(f"{name:<22} {seconds:8.1f} s  sampled {rows[-1][2]:4d}  scored {rows[-1][3]:4d}", flush=True)
        return seconds

    cpu_before = children_cpu_seconds()
    step("cold", snakemake)
    cold_cpu = children_cpu_seconds() - cpu_before
    step("no-op (snakemake)", snakemake)
    if not args.skip_dvc:
        timed(["git", "init", "-q"], work)
        timed([str(BIN / "dvc"), "init", "-q"], work)
        timed([str(BIN / "diffscale"), "dvc-yaml"], work)
        step("first dvc repro", [str(BIN / "dvc"), "repro"])
        step("no-op (dvc repro)", [str(BIN / "dvc"), "repro"])

    edited = yaml.safe_load(study.read_text())
    grid = next(g for g in edited["grids"] if g.get("name") == args.grid)
    grid["guidance"] = sorted(set(grid["guidance"]) | {args.guidance})
    study.write_text(yaml.safe_dump(edited, sort_keys=False))
    incremental = step("incremental", snakemake)

    # Forget the new cells, then compute exactly them again (their blocks forced) from the trained models.
    params = load(study)
    paths = Paths.of(params)
    cells = [c for c in expand(params) if c.guidance == args.guidance and c.sampler in grid["samplers"]
             and c.model in grid["models"] and c.search == "none"]
    fresh = {c.id for c in cells}
    for entry in computed(work):
        if entry["cell"] in fresh:
            shutil.rmtree(work / "results" / ".cache" / entry["kind"] / entry["key"][:2] / entry["key"], ignore_errors=True)
    blocks = {paths.block_of(c) for c in cells}
    forced = [str(folder(b)) for b in blocks for folder in (paths.block_samples, paths.block_scores)]
    same = step("same cells from scratch", snakemake + ["--forcerun", *forced])

    print(f"\ncold run: {cold_cpu:.0f} CPU-s (Snakemake and every job, user + sys)")
    print(f"incremental / same cells from scratch: {incremental / same:.2f}  (work dir: {work})")


if __name__ == "__main__":
    main()
