"""Sampling a block of cells: every (prompt, replicate) of the prompt set, for each cell of the block.

The block loads its pipeline and encodes its prompts once; each cell then gets its own images, per-image
records and cost ledger. Seeds follow the contract: image i draws its noise from (global seed, prompt
id, prompt, replicate), so all cells of a study are paired image for image.
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffscale import prompts as prompt_sets
from diffscale.atomic import atomic_directory
from diffscale.cells import Block, Cell, Paths
from diffscale.config import derive_seed
from diffscale.models import denoiser_gflops_per_nfe, load_pipeline
from diffscale.models.zoo import pick_device
from diffscale.sampling.loop import CountingDenoiser, denoise
from diffscale.sampling.samplers import SAMPLERS, make_scheduler


def image_seed(global_seed: int, prompt: dict, replicate: int) -> int:
    return derive_seed(global_seed, prompt["id"], prompt["prompt"], replicate)


def initial_noise(seeds: list[int], shape: tuple[int, ...], device) -> tuple[torch.Tensor, list[torch.Generator]]:
    """One generator per image: its starting noise first, then any noise a stochastic sampler draws."""
    generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
    noise = torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)
    return noise, generators


def latent_shape(pipeline) -> tuple[int, int, int]:
    size = pipeline.unet.config.sample_size
    return pipeline.unet.config.in_channels, size, size


class BlockSampler:
    """A loaded pipeline and the block's encoded prompt batches, shared by the block's cells."""

    def __init__(self, params: dict, block: Block, paths: Paths):
        started = time.perf_counter()
        torch.set_num_threads(params["threads"])
        self.params = params
        self.device = pick_device(params["device"])
        self.dtype = params["models"][block.model].get("dtype", "float32")
        self.pipeline = load_pipeline(paths.model(block.model), self.device, self.dtype)
        self.shape = latent_shape(self.pipeline)
        context = (self.pipeline.tokenizer.model_max_length, self.pipeline.text_encoder.config.hidden_size)
        self.gflops_per_nfe = denoiser_gflops_per_nfe(self.pipeline.unet, self.shape, context)
        self.load_seconds = time.perf_counter() - started

        started = time.perf_counter()
        replicates = params["sampling"]["replicates"]
        items = [(p, r) for p in prompt_sets.read(paths.prompt_set(block.prompt_set)) for r in range(replicates)]
        size = params["sampling"]["batch_size"]
        self.batches = []
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            with torch.no_grad():
                cond, uncond = self.pipeline.encode_prompt([p["prompt"] for p, _ in batch], self.device, 1, True)
            self.batches.append((batch, cond, uncond))
        self.n_images = len(items)
        self.encode_seconds = time.perf_counter() - started

    def sample(self, cell: Cell, out: Path, n_cells: int, progress: bool) -> None:
        seconds = {"load (block share)": self.load_seconds / n_cells, "encode_prompts (block share)": self.encode_seconds / n_cells,
                   "denoise": 0.0, "decode": 0.0, "write": 0.0}
        scheduler = make_scheduler(cell.sampler, self.pipeline.scheduler.config)
        denoiser = CountingDenoiser(self.pipeline.unet)
        stochastic = SAMPLERS[cell.sampler].stochastic
        records = []
        (out / "images").mkdir(parents=True)
        with tqdm(total=self.n_images, desc=cell.id, unit="img", disable=not progress, mininterval=2.0) as bar:
            for batch, cond, uncond in self.batches:
                tick = time.perf_counter()
                seeds = [image_seed(self.params["seed"], p, r) for p, r in batch]
                noise, generators = initial_noise(seeds, self.shape, self.device)
                nfe_before = denoiser.nfe
                with torch.no_grad():
                    latents = denoise(denoiser, scheduler, noise.to(cond.dtype), cond, uncond, cell.guidance, cell.steps,
                                      generators=generators if stochastic else None).latents
                nfe_per_image = (denoiser.nfe - nfe_before) / len(batch)
                seconds["denoise"] += time.perf_counter() - tick

                tick = time.perf_counter()
                with torch.no_grad():
                    decoded = self.pipeline.vae.decode(latents / self.pipeline.vae.config.scaling_factor).sample
                images = self.pipeline.image_processor.postprocess(decoded, output_type="pil")
                seconds["decode"] += time.perf_counter() - tick

                tick = time.perf_counter()
                for (prompt, replicate), seed, image in zip(batch, seeds, images):
                    name = f"images/{len(records):05d}.png"
                    image.save(out / name)
                    records.append({
                        "index": len(records), "file": name, "prompt_id": prompt["id"], "prompt": prompt["prompt"],
                        "replicate": replicate, "seed": seed, "candidate": 0, "verifier_scores": {}, "nfe": nfe_per_image,
                    })
                seconds["write"] += time.perf_counter() - tick
                bar.update(len(batch))
        (out / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        (out / "ledger.json").write_text(json.dumps(self.ledger(cell, denoiser, len(records), seconds), indent=2, sort_keys=True))

    def ledger(self, cell: Cell, denoiser: CountingDenoiser, n_images: int, seconds: dict) -> dict:
        """NFEs as counted, the paper convention without CFG, FLOPs per NFE, and wall time by phase."""
        nfe = denoiser.nfe / n_images
        per_image = sum(seconds[k] for k in ("encode_prompts (block share)", "denoise", "decode")) / n_images
        return {
            "cell": cell.id,
            "n_images": n_images,
            "denoiser_calls": denoiser.calls,
            "nfe_total": denoiser.nfe,
            "nfe_per_image": nfe,
            "nfe_per_image_nocfg": nfe / 2 if cell.guidance != 1.0 else nfe,
            "denoiser_params": sum(p.numel() for p in self.pipeline.unet.parameters()),
            "gflops_per_nfe": self.gflops_per_nfe,
            "gflops_per_image": self.gflops_per_nfe * nfe,
            "verifier_calls": 0,
            "verifier_gflops": 0.0,
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "seconds_per_image": per_image,
            "device": str(self.device),
            "dtype": self.dtype,
            "torch": torch.__version__,
            "host": platform.node(),
        }


def sample_block(params: dict, block: Block, cells: list[Cell], paths: Paths, progress: bool = True) -> Path:
    sampler = BlockSampler(params, block, paths)
    with atomic_directory(paths.block_samples(block)) as staging:
        for cell in cells:
            sampler.sample(cell, staging / cell.id, len(cells), progress)
    return paths.block_samples(block)
