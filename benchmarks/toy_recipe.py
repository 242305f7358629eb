"""Benchmark: does each rung of the toy ladder work? Training objectives compared on the same rung.

Method: Snakemake builds the default study's toy world (dataset, reference set, autoencoder, text encoder,
oracle) in a temporary directory. In one process, for each width, three denoisers are trained with the
study's denoiser recipe (steps, batch, learning rate, seed) and differ only in their objective:
  sd-epsilon      SD's scaled-linear schedule and epsilon prediction (the baseline: the ladder before
                  issue 14, whose sqrt(abar_T) = 0.068 leaves signal at the noisiest training step);
  v-prediction    the ladder's recipe: the same betas rescaled to zero terminal SNR, v-prediction;
  rectified-flow  the flow ladder's recipe.
Each samples the first N reference captions (CFG 2, the same per-image seeds for all) with DDIM for the
diffusion models and FlowMatch Euler for the flow model, at several step counts, and the oracle reads every
slot of every image (layout, both colours and shapes; `all_slots`: the whole caption right).
Run: `python benchmarks/toy_recipe.py [--widths 8 16] [--steps 2 5 10 20 50] [--images 256]` (~20 min).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import yaml
from diffusers import DDIMScheduler, DDPMScheduler

from diffscale.cells import Paths
from diffscale.config import resolve
from diffscale.models.families import family_of
from diffscale.models.zoo import load_pipeline
from diffscale.sampling.loop import CountingDenoiser, denoise, initial_noise
from diffscale.sampling.samplers import make_scheduler
from diffscale.toyworld import build, denoiser, oracle
from diffscale.toyworld.arrays import load_arrays

REPO = Path(__file__).resolve().parents[1]
SD_NOISING = DDPMScheduler.from_config(denoiser.SD_SCHEDULE)
SAMPLER = {"sd-epsilon": "ddim", "v-prediction": "ddim", "rectified-flow": "flow-euler"}


def sd_epsilon(x0: torch.Tensor, generator: torch.Generator):
    """The baseline objective: SD's schedule as it is, epsilon targets."""
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, SD_NOISING.config.num_train_timesteps, (len(x0),), generator=generator)
    return SD_NOISING.add_noise(x0, noise, t), t, noise


def slot_accuracy(model_dir: Path, sampler: str, steps: int, prompts: list[str], labels, judge) -> dict:
    pipeline = load_pipeline(model_dir, torch.device("cpu"))
    family = family_of(pipeline)
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, [{"prompt": p} for p in prompts], torch.device("cpu"))
        noise, _ = initial_noise(list(range(len(prompts))), family.latent_shape(pipeline), torch.device("cpu"))
        latents = denoise(CountingDenoiser(family.backbone(pipeline)), make_scheduler(sampler, pipeline.scheduler.config),
                          noise, cond, uncond, 2.0, steps).latents
        images = family.decode(pipeline, latents)
    pixels = (images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    return oracle.accuracy(judge, pixels, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 5, 10, 20, 50])
    parser.add_argument("--images", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    denoiser.OBJECTIVES["sd-epsilon"] = denoiser.Objective(sd_epsilon, DDIMScheduler, denoiser.SD_SCHEDULE)
    with tempfile.TemporaryDirectory(prefix="diffscale-recipe-") as tmp:
        work = Path(tmp)
        raw = yaml.safe_load((REPO / "params.yaml").read_text())
        (work / "params.yaml").write_text(yaml.safe_dump(raw))
        targets = [f"results/default/toyworld/{name}" for name in ("autoencoder", "text_encoder", "oracle", "reference")]
        subprocess.run([sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "workflow" / "Snakefile"), "-d", str(work),
                        "--configfile", str(work / "params.yaml"), "--cores", "2", "-q"], check=True, cwd=work)
        os.chdir(work)  # the study's paths are relative to its working directory
        _, labels, captions = load_arrays(Path("results/default/toyworld/reference"))
        prompts, labels = captions[: args.images], labels[: args.images]
        print("| width | objective | sampler | " + " | ".join(f"{s} steps" for s in args.steps) + " |")
        print("|---|---|---|" + "---|" * len(args.steps))
        for width in args.widths:
            for objective, sampler in SAMPLER.items():
                name = f"toy-{objective}-w{width}"
                raw["models"][name] = {"source": "toy", "width": width}
                params = resolve(raw)
                params["models"][name]["objective"] = objective  # the baseline is not a study option
                paths = Paths.of(params)
                build.build_denoiser(params, paths, name)
                judge = oracle.load(paths.component("oracle"))
                cells = [slot_accuracy(paths.model(name), sampler, s, prompts, labels, judge) for s in args.steps]
                print(f"| w{width} | {objective} | {sampler} | "
                      + " | ".join(f"{c['all_slots']:.3f} (layout {c['layout']:.2f})" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
