"""What a study will cost before it runs: NFEs per cell from each sampler's and search's formula, GFLOPs
from the real architectures' configurations (counted on the meta device, no weights), GPU-hours at an
assumed sustained throughput. `diffscale estimate` prints it; the README quotes it for the paper configs.
"""

from __future__ import annotations

import pandas as pd

from diffscale.cells import expand
from diffscale.search import paths as search_paths


def evaluations_per_trajectory(sampler: str, steps: int) -> int:
    """Denoiser evaluations of one trajectory: Heun evaluates twice per step but the last."""
    return 2 * steps - 1 if sampler == "heun" else steps


def trajectory_multiplier(params: dict, cell) -> float:
    """Search NFEs in units of one trajectory (see each algorithm's NFE formula in `diffscale.search`)."""
    if cell.search == "none":
        return 1.0
    if cell.search == "paths":
        options = params["search"]["paths"]
        start, spans = search_paths.rounds(cell.steps, options["start"], options["forward"], options["backward"])
        return cell.budget * (start + options["copies"] * sum(end - begin for begin, end in spans)) / cell.steps
    return float(cell.budget)


def images_per_cell(params: dict, prompt_set: str) -> int:
    return params["prompt_sets"][prompt_set]["size"] * params["sampling"]["replicates"]


def study_cost(params: dict, gflops_per_nfe: dict[str, float]) -> pd.DataFrame:
    """One row per cell: NFEs per image (CFG pair = 2) and denoiser PFLOPs for the whole cell."""
    rows = []
    for cell in expand(params):
        nfe = evaluations_per_trajectory(cell.sampler, cell.steps) * (1 if cell.guidance == 1.0 else 2)
        nfe *= trajectory_multiplier(params, cell)
        images = images_per_cell(params, cell.prompt_set)
        gflops = gflops_per_nfe.get(cell.model)
        rows.append({"cell": cell.id, "model": cell.model, "search": cell.search, "images": images, "nfe_per_image": nfe,
                     "pflops": None if gflops is None else gflops * nfe * images / 1e6})
    return pd.DataFrame(rows)


def real_model_gflops(params: dict) -> dict[str, float]:
    """GFLOPs per NFE of each hub model whose architecture is known (see `models.architectures.HUB_REPOS`)."""
    from diffscale.models.architectures import HUB_REPOS, measure_architectures

    by_model = {name: HUB_REPOS.get(entry.get("repo")) for name, entry in params["models"].items()}
    measured = {r["model"]: r["gflops_per_nfe"] for r in measure_architectures({a for a in by_model.values() if a})}
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
    from diffscale.cells import blocks

    cells = study_cost(params, real_model_gflops(params)).set_index("cell")["pflops"]
    minutes = {}
    for block, members in blocks(params).items():
        pflops = cells.loc[[c.id for c in members]]
        if pflops.notna().all():
            minutes[block.id] = int(10 + margin * pflops.sum() * 1e15 / (sustained_tflops * 1e12) / 60)
    return minutes
