"""What a study will cost before it runs: NFEs per cell from each sampler's and search's formula, GFLOPs
from the real architectures' configurations (counted on the meta device, no weights), GPU-hours at an
assumed sustained throughput. `diffscale estimate` prints it; the README quotes it for the paper configs.
"""

from __future__ import annotations

from diffscale.cells import Cell, blocks, expand
from diffscale.lazy import lazy_import
from diffscale.models.architectures import HUB_REPOS, counted
from diffscale.sampling.samplers import SAMPLERS
from diffscale.search import ALGORITHMS

pd = lazy_import("pandas")


def embedded_guidance(params: dict, model: str) -> bool:
    """A guidance-distilled model (FLUX.1-dev) takes the guidance scale as an input: no CFG pair."""
    return params["models"][model].get("guidance", "classifier-free") == "embedded"


def evaluations_per_step(params: dict, cell: Cell) -> int:
    """2 for a classifier-free guidance pair, 1 without guidance or with guidance embedded in the model."""
    return 1 if cell.guidance == 1.0 or embedded_guidance(params, cell.model) else 2


def nfe_per_image(params: dict, cell: Cell) -> float:
    """Denoiser evaluations per final image, a CFG pair counting 2, from the registries' formulas: the
    sampler's evaluations per trajectory times the search algorithm's trajectories per image."""
    nfe = SAMPLERS[cell.sampler].evaluations(cell.steps) * evaluations_per_step(params, cell)
    if cell.search != "none":
        nfe *= ALGORITHMS[cell.search].trajectories(cell.steps, cell.budget, params["search"][cell.search])
    return nfe


def images_per_cell(params: dict, prompt_set: str) -> int:
    return params["prompt_sets"][prompt_set]["size"] * params["sampling"]["replicates"]


def study_cost(params: dict, gflops_per_nfe: dict[str, float]) -> pd.DataFrame:
    """One row per cell: NFEs per image (CFG pair = 2) and denoiser PFLOPs for the whole cell."""
    rows = []
    for cell in expand(params):
        nfe = nfe_per_image(params, cell)
        images = images_per_cell(params, cell.prompt_set)
        gflops = gflops_per_nfe.get(cell.model)
        rows.append({"cell": cell.id, "model": cell.model, "search": cell.search, "images": images, "nfe_per_image": nfe,
                     "pflops": None if gflops is None else gflops * nfe * images / 1e6})
    return pd.DataFrame(rows)


def real_model_gflops(params: dict) -> dict[str, float]:
    """GFLOPs per NFE of each hub model whose architecture is known (see `models.architectures.HUB_REPOS`), as
    counted on the meta device and recorded in `architectures.json`."""
    by_model = {name: HUB_REPOS.get(entry.get("repo")) for name, entry in params["models"].items()}
    measured = {r["model"]: r["gflops_per_nfe"] for r in counted()}
    return {name: measured[arch] for name, arch in by_model.items() if arch in measured}


def summary(params: dict, sustained_tflops: float) -> pd.DataFrame:
    """Per model: cells, images, NFEs, PFLOPs and GPU-hours at `sustained_tflops` (denoiser only)."""
    cells = study_cost(params, real_model_gflops(params))
    cells["nfe"] = cells["nfe_per_image"] * cells["images"]
    table = cells.groupby("model", sort=False).agg(cells=("cell", "size"), images=("images", "sum"), nfe=("nfe", "sum"),
                                                   pflops=("pflops", "sum"))
    table["gpu_hours"] = table["pflops"] * 1e15 / (sustained_tflops * 1e12) / 3600
    return table


def block_minutes(params: dict, sustained_tflops: float = 400.0, margin: float = 2.0) -> dict[str, int]:
    """Wall-clock minutes to request per sampling job (Slurm `runtime`): the estimate x margin + 10 minutes.

    Blocks of models whose architecture is unknown (toy models, local folders) are left out.
    """
    gflops = real_model_gflops(params)
    minutes = {}
    for block, members in blocks(params).items():
        if block.model in gflops:
            total = sum(gflops[block.model] * nfe_per_image(params, c) * images_per_cell(params, c.prompt_set) for c in members)
            minutes[block.id] = int(10 + margin * total * 1e9 / (sustained_tflops * 1e12) / 60)
    return minutes
