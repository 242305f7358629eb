"""Sampling a block of cells: every (prompt, replicate) of the prompt set, for each cell of the block.

Cells already in the cell cache (same key: model weights, prompts, parameters, seeds, options and code)
are reused; for the others the block loads its pipeline (and, for a search block, its verifier) and
encodes its prompts once, and each cell gets its own images, per-image records and cost ledger. Seeds
follow the contract: image i draws its noise from (global seed, prompt id, prompt, replicate), so all
cells of a study are paired image for image, and a search's first candidate is the no-search image.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import platform
import time
from pathlib import Path

from tqdm.auto import tqdm

from diffscale import prompts as prompt_sets
from diffscale import verifiers as verifier_registry
from diffscale.atomic import atomic_directory
from diffscale.cache import CellCache, key_of, library_versions, link_tree
from diffscale.cells import Block, Cell, Paths
from diffscale.codeversion import code_version
from diffscale.estimate import embedded_guidance, evaluations_per_step, nfe_per_image
from diffscale.lazy import lazy_import
from diffscale.manifest import SAMPLING_LEDGER, content_hash, file_hash, verify
from diffscale.sampling.loop import CountingDenoiser, denoise, initial_noise, set_schedule, take
from diffscale.sampling.samplers import SAMPLERS, make_scheduler, refuse_blind_start
from diffscale.search import ALGORITHMS, SearchProblem
from diffscale.seeds import derive_seed
from diffscale.verifiers import study_verifiers

# A block whose cells are all in the cache restores them without loading torch, diffusers or a model: only
# a job that samples pays for importing them (seconds per job, more than a toy block's sampling).
torch = lazy_import("torch")
image_processor = lazy_import("diffusers.image_processor")
families = lazy_import("diffscale.models.families")
flops = lazy_import("diffscale.models.flops")
gpu = lazy_import("diffscale.models.gpu")
zoo = lazy_import("diffscale.models.zoo")

log = logging.getLogger(__name__)


def image_seed(global_seed: int, prompt: dict, replicate: int) -> int:
    return derive_seed(global_seed, prompt["id"], prompt["prompt"], replicate)


def to_pil(images):
    """Images in [0, 1] -> PIL, rounded as diffusers' image processor rounds them."""
    return image_processor.VaeImageProcessor.numpy_to_pil(images.permute(0, 2, 3, 1).float().cpu().numpy())


def sample_pixels(pipeline, prompts: list[str], sampler: str, steps: int, guidance: float, seeds: list[int]):
    """uint8 images (N, H, W, C) of a loaded pipeline, one per prompt and seed, with the study's own loop, outside
    the DAG: for benchmarks and tests that compare models on the same prompts and seeds (no search, CPU)."""
    family = families.family_of(pipeline)
    with torch.no_grad():
        cond, uncond = family.encode(pipeline, [{"prompt": p} for p in prompts], torch.device("cpu"))
        cond, uncond, loop_guidance = families.guidance_inputs(family, pipeline, cond, uncond, guidance)
        noise, generators = initial_noise(seeds, family.latent_shape(pipeline), "cpu")
        latents = denoise(CountingDenoiser(family.backbone(pipeline), call=family.call),
                          make_scheduler(sampler, pipeline.scheduler.config), noise, cond, uncond, loop_guidance, steps,
                          generators=generators if SAMPLERS[sampler].stochastic else None).latents
        return (family.decode(pipeline, latents) * 255).round().byte().permute(0, 2, 3, 1).numpy()


class BlockSampler:
    """A loaded pipeline and the block's encoded prompt batches, shared by the block's cells."""

    def __init__(self, params: dict, block: Block, paths: Paths):
        started = time.perf_counter()
        torch.set_num_threads(params["threads"])
        self.params = params
        self.device = zoo.pick_device(params["device"])
        self.dtype = params["models"][block.model].get("dtype", "float32")
        verify(paths.model(block.model))
        self.pipeline = gpu.configure(zoo.load_pipeline(paths.model(block.model), self.device, self.dtype), params["execution"])
        self.family = families.family_of(self.pipeline)
        self.shape = self.family.latent_shape(self.pipeline)
        declared = embedded_guidance(params, block.model)
        if declared != self.family.embedded_guidance(self.pipeline):
            raise ValueError(
                f"models.{block.model}.guidance: the study says {'embedded' if declared else 'classifier-free'} but the "
                f"{type(self.pipeline).__name__} loaded {'does not embed' if declared else 'embeds'} the guidance scale; "
                f"set it to {'classifier-free' if declared else 'embedded'} (allowed: classifier-free, embedded)")
        self.paths = paths
        self.verifiers: dict = {}  # loaded when a cell first searches with them
        self.load_seconds = time.perf_counter() - started

        started = time.perf_counter()
        replicates = params["sampling"]["replicates"]
        items = [(p, r) for p in prompt_sets.read(paths.prompt_set(block.prompt_set)) for r in range(replicates)]
        size = params["models"][block.model].get("batch_size", params["sampling"]["batch_size"])
        self.batches = []
        for start in range(0, len(items), size):
            batch = items[start : start + size]
            with torch.no_grad():
                cond, uncond = self.family.encode(self.pipeline, [p for p, _ in batch], self.device)
            self.batches.append((batch, cond, uncond))
        self.n_images = len(items)
        self.encode_seconds = time.perf_counter() - started
        # One single-sample pass of the backbone with a real conditioning row, counted on the meta device.
        first = take(self.batches[0][1], torch.tensor([0]))
        self.gflops_per_nfe = flops.backbone_gflops_per_nfe(self.family.backbone(self.pipeline), self.shape,
                                                      self.guided(first, first, 1.0)[0], meta=True, call=self.family.call)

    def refuse_blind_starts(self, cells: list[Cell]) -> None:
        """Check every cell's schedule before the block samples any (`samplers.refuse_blind_start`)."""
        for cell in cells:
            scheduler = make_scheduler(cell.sampler, self.pipeline.scheduler.config)
            set_schedule(scheduler, cell.steps, "cpu", self.schedule_options(cell))
            refuse_blind_start(scheduler, cell.sampler, cell.steps)

    def guided(self, cond, uncond, guidance: float):
        """The conditioning and the loop's CFG scale for `guidance` (embedded in the inputs of a distilled model)."""
        return families.guidance_inputs(self.family, self.pipeline, cond, uncond, guidance)

    def schedule_options(self, cell: Cell) -> dict:
        """The model's own `set_timesteps` arguments for this cell (FLUX: mu, and its sigmas for the schedulers
        that take explicit sigmas; FlowMatch Heun does not)."""
        takes_sigmas = "sigmas" in inspect.signature(SAMPLERS[cell.sampler].scheduler_class().set_timesteps).parameters
        return self.family.schedule_options(self.pipeline, self.shape, steps=cell.steps if takes_sigmas else None)

    def denoiser(self) -> CountingDenoiser:
        return CountingDenoiser(self.family.backbone(self.pipeline), call=self.family.call)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.family.decode(self.pipeline, latents)

    def verifier(self, name: str):
        if name not in self.verifiers:
            self.verifiers[name] = study_verifiers(self.params, self.paths, [name], self.device)[name]
        return self.verifiers[name]

    def search_problem(self, cell: Cell, denoiser, cond, uncond, seeds, prompts) -> SearchProblem:
        verifier = self.verifier(cell.verifier)
        level = verifier.intermediate_level
        cond, uncond, guidance = self.guided(cond, uncond, cell.guidance)
        return SearchProblem(
            denoiser=denoiser, make_scheduler=lambda: make_scheduler(cell.sampler, self.pipeline.scheduler.config),
            stochastic=SAMPLERS[cell.sampler].stochastic, steps=cell.steps, guidance=guidance,
            schedule_options=self.schedule_options(cell),
            cond=cond, uncond=uncond, seeds=seeds, prompts=prompts, shape=self.shape, decode=self.decode,
            # As many trajectories per denoiser batch as slots: an out-of-memory retry with fewer slots shrinks both.
            verifier=verifier, chunk=len(seeds),
            intermediate_step=None if level is None else min(cell.steps - 1, int(level * cell.steps)),
        )

    def sample(self, cell: Cell, out: Path, n_cells: int, progress: bool) -> None:
        seconds = {"load (block share)": self.load_seconds / n_cells, "encode_prompts (block share)": self.encode_seconds / n_cells,
                   "denoise (incl. search)": 0.0, "decode": 0.0, "write": 0.0}
        scheduler = make_scheduler(cell.sampler, self.pipeline.scheduler.config)
        denoiser = self.denoiser()
        stochastic = SAMPLERS[cell.sampler].stochastic
        verifier = self.verifier(cell.verifier) if cell.search != "none" else None
        verifier_before = dataclasses.replace(verifier.cost) if verifier else None
        records = []
        (out / "images").mkdir(parents=True)
        with tqdm(total=self.n_images, desc=cell.id, unit="img", disable=not progress, mininterval=2.0) as bar:
            for batch, cond, uncond in self.batches:
                tick = time.perf_counter()
                seeds = [image_seed(self.params["seed"], p, r) for p, r in batch]
                nfe_before = denoiser.nfe

                def run(rows: list[int], cond=cond, uncond=uncond, batch=batch, seeds=seeds) -> list[tuple]:
                    """Sample these rows of the batch (per-image seeds: the result is the same in any sub-batch)."""
                    index = torch.tensor(rows)
                    row_cond, row_uncond, row_seeds = take(cond, index), take(uncond, index), [seeds[i] for i in rows]
                    with torch.no_grad():
                        if cell.search == "none":
                            noise, generators = initial_noise(row_seeds, self.shape, self.device)
                            row_cond, row_uncond, guidance = self.guided(row_cond, row_uncond, cell.guidance)
                            latents = denoise(denoiser, scheduler, noise.to(denoiser.model.dtype), row_cond, row_uncond,
                                              guidance, cell.steps, generators=generators if stochastic else None,
                                              schedule_options=self.schedule_options(cell)).latents
                            return [(x, None) for x in latents]
                        prompts = [batch[i][0]["prompt"] for i in rows]
                        problem = self.search_problem(cell, denoiser, row_cond, row_uncond, row_seeds, prompts)
                        found = ALGORITHMS[cell.search].run(problem, cell.budget, self.params["search"].get(cell.search, {}))
                        return [(x, {"candidate": c, "verifier_scores": {cell.verifier: float(v)}, "search": h})
                                for x, c, v, h in zip(found.latents, found.chosen, found.scores, found.history)]

                sampled = gpu.batched_with_oom_fallback(run, list(range(len(batch))), len(batch))
                latents = torch.stack([x for x, _ in sampled])
                nfe_per_image = (denoiser.nfe - nfe_before) / len(batch)
                seconds["denoise (incl. search)"] += time.perf_counter() - tick

                tick = time.perf_counter()
                images = to_pil(self.decode(latents))
                seconds["decode"] += time.perf_counter() - tick

                tick = time.perf_counter()
                for i, ((prompt, replicate), seed, image) in enumerate(zip(batch, seeds, images)):
                    name = f"images/{len(records):05d}.png"
                    image.save(out / name)
                    record = {
                        "index": len(records), "file": name, "prompt_id": prompt["id"], "prompt": prompt["prompt"],
                        "replicate": replicate, "seed": seed, "candidate": 0, "verifier_scores": {}, "nfe": nfe_per_image,
                    }
                    records.append(record | (sampled[i][1] or {}))
                seconds["write"] += time.perf_counter() - tick
                bar.update(len(batch))
        (out / "records.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
        spent = None
        if verifier is not None:
            after = verifier.cost
            spent = {"calls": after.calls - verifier_before.calls, "images": after.images - verifier_before.images,
                     "gflops": after.gflops - verifier_before.gflops}
        ledger = self.ledger(cell, denoiser, len(records), seconds, spent)
        (out / SAMPLING_LEDGER).write_text(json.dumps(ledger, indent=2, sort_keys=True))

    def ledger(self, cell: Cell, denoiser: CountingDenoiser, n_images: int, seconds: dict, verifier: dict | None) -> dict:
        """NFEs as counted (and as the registries' formulas expect them), the paper convention without CFG,
        FLOPs per NFE, verifier cost and wall time by phase."""
        nfe = denoiser.nfe / n_images
        expected = nfe_per_image(self.params, cell)
        if nfe != expected:  # an out-of-memory retry counts its lost evaluations; anything else is a bug
            log.warning("%s: %g NFEs per image counted, %g expected from the sampler's and search's formulas",
                        cell.id, nfe, expected)
        per_image = sum(seconds[k] for k in ("encode_prompts (block share)", "denoise (incl. search)", "decode")) / n_images
        verifier = verifier or {"calls": 0, "images": 0, "gflops": 0.0}
        return {
            "cell": cell.id,
            "n_images": n_images,
            "denoiser_calls": denoiser.calls,
            "nfe_total": denoiser.nfe,
            "nfe_per_image": nfe,
            "nfe_per_image_expected": expected,
            "nfe_per_image_nocfg": nfe / evaluations_per_step(self.params, cell),
            "denoiser_params": sum(p.numel() for p in self.family.backbone(self.pipeline).parameters()),
            "gflops_per_nfe": self.gflops_per_nfe,
            "gflops_per_image": self.gflops_per_nfe * nfe,
            "search": {"algorithm": cell.search, "verifier": cell.verifier, "budget": cell.budget,
                       "options": self.params["search"][cell.search] if cell.search != "none" else {}},
            "verifier_calls": verifier["calls"],
            "verifier_images": verifier["images"],
            "verifier_gflops": verifier["gflops"],
            "verifier_gflops_per_image": verifier["gflops"] / n_images,
            "seconds": {k: round(v, 4) for k, v in seconds.items()},
            "seconds_per_image": per_image,
            "device": str(self.device),
            "dtype": self.dtype,
            "torch": torch.__version__,
            "host": platform.node(),
        }


def cell_key(params: dict, paths: Paths, cell: Cell, shared: dict) -> str:
    """Everything that decides a sampled cell's bytes (the batch size does not: images are batch-invariant):
    the block's `shared` inputs, the cell, seeds, and a search cell's options and verifier (its specs and
    the contents of the toy components it reads)."""
    parts = shared | {"cell": cell.id, "seed": params["seed"], "replicates": params["sampling"]["replicates"]}
    if cell.search != "none":
        specs = params["verifiers"]
        parts |= {"search": params["search"][cell.search],
                  "verifier": {name: specs[name] for name in verifier_registry.with_members([cell.verifier], specs)},
                  "components": {c: content_hash(paths.component(c))
                                 for c in sorted(verifier_registry.toy_components([cell.verifier], specs))}}
    return key_of(parts)


def device_key(requested: str) -> str:
    """The device a study's `device` names, as cell keys record it: only `auto` needs torch to resolve."""
    return str(zoo.pick_device(requested)) if requested == "auto" else requested


def block_inputs(params: dict, block: Block, paths: Paths) -> dict:
    """The parts of the cell key that every cell of the block shares: the contents of the model and the
    prompts, the device and execution options, the code and the libraries."""
    return {
        "model": content_hash(paths.model(block.model)), "dtype": params["models"][block.model].get("dtype", "float32"),
        "prompts": file_hash(paths.prompt_set(block.prompt_set)), "device": device_key(params["device"]),
        "execution": params["execution"], "threads": params["threads"],
        "code": code_version("diffscale.sampling.block"),
        "libraries": library_versions("torch", "diffusers", "transformers", "open_clip_torch"),
    }


def sample_block(params: dict, block: Block, cells: list[Cell], paths: Paths, progress: bool = True) -> int:
    """Write the block's cells (from the cache where it has them); returns how many were sampled now."""
    cache = CellCache(paths.cache)
    inputs = block_inputs(params, block, paths)
    keys = {cell: cell_key(params, paths, cell, inputs) for cell in cells}
    missing = sum(not cache.has_samples(key) for key in keys.values())
    loaded: list[BlockSampler] = []  # the pipeline is loaded only if some cell must be sampled

    def compute(out: Path, cell: Cell) -> None:
        if not loaded:
            loaded.append(BlockSampler(params, block, paths))
            loaded[0].refuse_blind_starts([c for c in cells if not cache.has_samples(keys[c])])
        loaded[0].sample(cell, out, max(missing, 1), progress)

    computed = 0
    with atomic_directory(paths.block_samples(block)) as staging:
        for cell in cells:
            entry, fresh = cache.samples(cell.id, keys[cell], lambda out, cell=cell: compute(out, cell))
            link_tree(entry, staging / cell.id)
            computed += fresh
    return computed
