"""Sampling one cell: every (prompt, replicate) of its prompt set, with the cost ledger and records.

Seeds follow the contract: image i draws its noise from (global seed, prompt id, prompt, replicate), so
all cells of a study are paired image for image and differ only in what the cell changes.
"""

from __future__ import annotations

import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from diffscale import prompts as prompt_sets
from diffscale.atomic import atomic_directory
from diffscale.cells import Cell, Paths
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


def sample_cell(params: dict, cell: Cell, paths: Paths, progress: bool = True) -> Path:
    seconds = defaultdict(float)
    started = time.perf_counter()
    torch.set_num_threads(params["threads"])
    device = pick_device(params["device"])
    dtype = params["models"][cell.model].get("dtype", "float32")
    pipeline = load_pipeline(paths.model(cell.model), device, dtype)
    scheduler = make_scheduler(cell.sampler, pipeline.scheduler.config)
    denoiser = CountingDenoiser(pipeline.unet)
    shape = latent_shape(pipeline)
    seconds["load"] = time.perf_counter() - started

    replicates = params["sampling"]["replicates"]
    items = [(p, r) for p in prompt_sets.read(paths.prompt_set(cell.prompt_set)) for r in range(replicates)]
    batch_size = params["sampling"]["batch_size"]
    records = []
    with atomic_directory(paths.samples(cell)) as staging:
        (staging / "images").mkdir()
        bar = tqdm(total=len(items), desc=cell.id, unit="img", disable=not progress, mininterval=2.0)
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            tick = time.perf_counter()
            with torch.no_grad():
                cond, uncond = pipeline.encode_prompt([p["prompt"] for p, _ in batch], device, 1, True)
            seconds["encode_prompts"] += time.perf_counter() - tick

            tick = time.perf_counter()
            seeds = [image_seed(params["seed"], p, r) for p, r in batch]
            noise, generators = initial_noise(seeds, shape, device)
            nfe_before = denoiser.nfe
            with torch.no_grad():
                latents = denoise(
                    denoiser, scheduler, noise.to(cond.dtype), cond, uncond, cell.guidance, cell.steps,
                    generators=generators if SAMPLERS[cell.sampler].stochastic else None,
                ).latents
            nfe_per_image = (denoiser.nfe - nfe_before) / len(batch)
            seconds["denoise"] += time.perf_counter() - tick

            tick = time.perf_counter()
            with torch.no_grad():
                decoded = pipeline.vae.decode(latents / pipeline.vae.config.scaling_factor).sample
            images = pipeline.image_processor.postprocess(decoded, output_type="pil")
            seconds["decode"] += time.perf_counter() - tick

            tick = time.perf_counter()
            for (prompt, replicate), seed, image in zip(batch, seeds, images):
                index = len(records)
                name = f"images/{index:05d}.png"
                image.save(staging / name)
                records.append({
                    "index": index, "file": name, "prompt_id": prompt["id"], "prompt": prompt["prompt"],
                    "replicate": replicate, "seed": seed, "candidate": 0, "verifier_scores": {},
                    "nfe": nfe_per_image,
                })
            seconds["write"] += time.perf_counter() - tick
            bar.update(len(batch))
        bar.close()

        (staging / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        ledger = cost_ledger(pipeline, cell, denoiser, len(records), shape, seconds, device, dtype)
        (staging / "ledger.json").write_text(json.dumps(ledger, indent=2, sort_keys=True))
    return paths.samples(cell)


def cost_ledger(pipeline, cell: Cell, denoiser: CountingDenoiser, n_images: int, shape, seconds, device, dtype) -> dict:
    """NFEs as counted, the paper convention without CFG, FLOPs per NFE, and wall time by phase."""
    nfe = denoiser.nfe / n_images
    nfe_nocfg = nfe / 2 if cell.guidance != 1.0 else nfe
    context_shape = (pipeline.tokenizer.model_max_length, pipeline.text_encoder.config.hidden_size)
    gflops = denoiser_gflops_per_nfe(pipeline.unet, shape, context_shape)
    sampling_seconds = seconds["encode_prompts"] + seconds["denoise"] + seconds["decode"]
    return {
        "cell": cell.id,
        "n_images": n_images,
        "denoiser_calls": denoiser.calls,
        "nfe_total": denoiser.nfe,
        "nfe_per_image": nfe,
        "nfe_per_image_nocfg": nfe_nocfg,
        "denoiser_params": sum(p.numel() for p in pipeline.unet.parameters()),
        "gflops_per_nfe": gflops,
        "gflops_per_image": gflops * nfe,
        "verifier_calls": 0,
        "verifier_gflops": 0.0,
        "seconds": {k: round(v, 4) for k, v in sorted(seconds.items())},
        "seconds_per_image": sampling_seconds / n_images,
        "device": str(device),
        "dtype": dtype,
        "torch": torch.__version__,
        "host": platform.node(),
    }
