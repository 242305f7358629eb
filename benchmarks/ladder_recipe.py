"""Benchmark: does a recipe give a ladder that orders by size? Train rungs with it, then judge them, paired.

Method: on a study's built toy world (dataset, autoencoder, text encoder, judge and its prompt set; run the study
or its toy targets first), three verbs:
  ceiling      the judge's accuracy on held-out real images and on their autoencoder reconstructions: what no
               denoiser of this latent space can exceed (`--autoencoder DIR` reads another autoencoder);
  train        one rung per width with `denoiser.fit`, the study's recipe unless overridden (steps, batch, lr,
               seed), saved as a pipeline folder under OUT/<tag>/w<width>;
  judge        every rung of a tag samples the first N captions (DDIM with the given spacing, steps and
               guidance, the study's per-image seeds); per rung the judge's caption probability, and for each
               adjacent pair the paired bootstrap CI (over prompts) of the larger minus the smaller.
Run: `python benchmarks/ladder_recipe.py train --out /tmp/rungs --tag b32 --widths 8 16 --steps 1200 --batch 32`,
then `python benchmarks/ladder_recipe.py judge --out /tmp/rungs --tag b32` (minutes per rung on 1 core).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from diffscale import prompts as prompt_sets
from diffscale.cells import Paths
from diffscale.config import resolve
from diffscale.metrics import compositional, paired
from diffscale.models.zoo import load_pipeline
from diffscale.sampling.block import image_seed, sample_pixels
from diffscale.toyworld import build, denoiser, judge
from diffscale.toyworld.arrays import load_arrays
from diffscale.toyworld.training import to_unit_range


def ceiling(params: dict, paths: Paths, autoencoder: Path | None) -> None:
    from diffusers import AutoencoderKL

    images, labels, _ = load_arrays(paths.reference)
    reader = judge.load(paths.component("judge"))
    vae = AutoencoderKL.from_pretrained(autoencoder or paths.component("autoencoder"))
    with torch.no_grad():
        real = to_unit_range(images)
        decoded = vae.decode(vae.encode(real).latent_dist.mode()).sample.clamp(-1, 1)
        decoded = ((decoded + 1) * 127.5).round() / 127.5 - 1  # as an 8-bit image
        for name, pixels in (("real", real), ("reconstructed", decoded)):
            correct = reader.predict(pixels) == torch.from_numpy(labels)
            print(f"{name}: all slots {correct.all(1).double().mean():.3f}, per slot "
                  f"{correct.double().mean(0).numpy().round(3).tolist()}")


def train(params: dict, paths: Paths, args) -> None:
    recipe = build.toy_training(params, "denoiser") | {k: v for k, v in (("steps", args.steps), ("batch_size", args.batch),
                                                                          ("lr", args.lr)) if v is not None}
    images, _, captions = build.load_dataset(paths)
    components = {"vae": build.diffusers.AutoencoderKL.from_pretrained(paths.component("autoencoder")),
                  "tokenizer": build.transformers.CLIPTokenizer.from_pretrained(paths.component("text_encoder") / "tokenizer"),
                  "text_encoder": build.transformers.CLIPTextModel.from_pretrained(paths.component("text_encoder") / "text_encoder")}
    for width in args.widths:
        seed = args.seed if args.seed is not None else build._seed(params, "denoiser")
        unet, report, ledger = denoiser.fit(components, images, captions, width, recipe["steps"], recipe["batch_size"],
                                            recipe["lr"], recipe["uncond_probability"], seed)
        denoiser.save_pipeline(unet, components, args.out / args.tag / f"w{width}", "v-prediction",
                               recipe.get("timestep_spacing"))
        print(f"w{width}: final loss {report['final_loss']:.4f}, {ledger.seconds:.0f} s of training")


def judge_rungs(params: dict, paths: Paths, args) -> None:
    prompts = prompt_sets.read(paths.prompt_set(args.prompt_set))[: args.prompts]
    seeds, labels = [image_seed(params["seed"], p, 0) for p in prompts], [p["labels"] for p in prompts]
    reader = judge.load(paths.component("judge"))
    rungs = sorted((int(folder.name[1:]), folder) for folder in (args.out / args.tag).glob("w*"))
    cells = {}
    for width, folder in rungs:
        pixels = sample_pixels(load_pipeline(folder, torch.device("cpu")), [p["prompt"] for p in prompts],
                               f"ddim-{args.spacing}", args.sampling_steps, args.guidance, seeds)
        values = compositional.per_image(reader, pixels, labels)["probability"]
        cells[width] = paired.PerImage([(p["id"], 0) for p in prompts], None, {"caption_probability": values})
        print(f"w{width}: caption probability {np.mean(values):.3f}", flush=True)
    for (small, _), (large, _) in zip(rungs, rungs[1:]):
        d = paired.paired_difference("caption_probability", cells[large], cells[small], None, 1000, 0.95, params["seed"])
        print(f"w{large} - w{small}: {d['difference']:+.3f} [{d['diff_ci_low']:+.3f}, {d['diff_ci_high']:+.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("verb", choices=["ceiling", "train", "judge"])
    parser.add_argument("--study", type=Path, default=Path("params.yaml"))
    parser.add_argument("--out", type=Path, default=Path("rungs"))
    parser.add_argument("--tag", default="recipe")
    parser.add_argument("--autoencoder", type=Path)
    parser.add_argument("--widths", type=int, nargs="+", default=[4, 8, 10, 12, 16])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--prompt-set", default="toy-captions")
    parser.add_argument("--prompts", type=int, default=256)
    parser.add_argument("--spacing", choices=["leading", "trailing"], default="trailing")
    parser.add_argument("--sampling-steps", type=int, default=5)
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = resolve(yaml.safe_load(args.study.read_text()))
    paths = Paths.of(params)
    {"ceiling": lambda: ceiling(params, paths, args.autoencoder), "train": lambda: train(params, paths, args),
     "judge": lambda: judge_rungs(params, paths, args)}[args.verb]()


if __name__ == "__main__":
    main()
