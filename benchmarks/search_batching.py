"""Benchmark: batched best-of-8 search vs calling a diffusers pipeline once per candidate.

Method: Snakemake builds the smoke study's toy world, oracle and `toy-w16` denoiser in a temporary
directory. Then, in one process and on the same prompts, seeds and DDIM schedule, best-of-N random
search with the toy oracle as verifier runs two ways:
  baseline  for each prompt and candidate, `pipeline(prompt, generator=..., output_type="pt")` (one
            image per call, CFG inside the pipeline), then the verifier on that image;
  batched   `diffscale.search` random search: every candidate of every prompt in one batch through
            the denoiser, the VAE and the verifier (what a search cell does).
Reported: candidates per second of each, the speed-up, and how often both pick the same candidate
(they should: same noise, same scheduler; differences are float summation order).
Run: `python benchmarks/search_batching.py [--prompts 32 --candidates 8 --steps 10]`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def build_world(work: Path, prompts: int) -> dict:
    study = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    study["prompt_sets"]["toy-captions"]["size"] = prompts
    (work / "study.yaml").write_text(yaml.safe_dump(study))
    env = os.environ | {"PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    targets = ["results/smoke/models/toy-w16", "results/smoke/prompts/toy-captions.jsonl", "results/smoke/toyworld/oracle"]
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(work),
                    "--cores", "2", "--configfile", str(work / "study.yaml")], check=True, env=env, capture_output=True)
    return study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=2.0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    work = Path(tempfile.mkdtemp(prefix="diffscale-bench-"))
    build_world(work, args.prompts)
    os.chdir(work)
    from diffscale import prompts as prompt_sets
    from diffscale.cells import Paths
    from diffscale.models.families import family_of
    from diffscale.models.zoo import load_pipeline
    from diffscale.sampling.block import image_seed
    from diffscale.sampling.loop import CountingDenoiser
    from diffscale.sampling.samplers import make_scheduler
    from diffscale.search import ALGORITHMS, SearchProblem, candidate_seed
    from diffscale.verifiers import VerifierResources, build_verifiers

    paths = Paths("smoke")
    pipeline = load_pipeline(paths.model("toy-w16"), torch.device("cpu"))
    family = family_of(pipeline)
    verifier = build_verifiers({"oracle": {"kind": "oracle"}}, VerifierResources(oracle=paths.component("oracle")))["oracle"]
    records = prompt_sets.read(paths.prompt_set("toy-captions"))
    texts = [r["prompt"] for r in records]
    seeds = [image_seed(0, r, 0) for r in records]
    total = len(records) * args.candidates

    # Baseline: the pipeline once per candidate.
    pipeline.scheduler = make_scheduler("ddim", pipeline.scheduler.config)
    started = time.perf_counter()
    baseline_choice = []
    with torch.no_grad():
        for text, seed in zip(texts, seeds):
            scores = []
            for k in range(args.candidates):
                image = pipeline(text, num_inference_steps=args.steps, guidance_scale=args.guidance, output_type="pt",
                                 generator=torch.Generator().manual_seed(candidate_seed(seed, k))).images
                scores.append(float(verifier.score(image, [text])[0]))
            baseline_choice.append(max(range(args.candidates), key=scores.__getitem__))
    baseline = time.perf_counter() - started

    # Batched: one search over every prompt's candidates.
    started = time.perf_counter()
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, records, torch.device("cpu"))
        problem = SearchProblem(
            denoiser=CountingDenoiser(family.backbone(pipeline)), make_scheduler=lambda: make_scheduler("ddim", pipeline.scheduler.config),
            stochastic=False, steps=args.steps, guidance=args.guidance, cond=cond, uncond=uncond, seeds=seeds, prompts=texts,
            shape=family.latent_shape(pipeline), decode=lambda latents: family.decode(pipeline, latents), verifier=verifier,
        )
        result = ALGORITHMS["random"].run(problem, args.candidates, {})
    batched = time.perf_counter() - started

    agree = sum(a == b for a, b in zip(baseline_choice, result.chosen)) / len(records)
    print(f"{len(records)} prompts x {args.candidates} candidates, DDIM {args.steps} steps, CFG {args.guidance}, 1 thread")
    print(f"pipeline per candidate: {baseline:7.2f} s  {total / baseline:8.1f} candidates/s")
    print(f"batched search:         {batched:7.2f} s  {total / batched:8.1f} candidates/s")
    print(f"speed-up: {baseline / batched:.1f}x; same candidate chosen for {agree:.0%} of prompts")


if __name__ == "__main__":
    main()
