"""The tidy table: one row per cell and metric, with the cell's configuration and cost ledger.

`results/<study>/metrics.csv` is what every figure and table reads.
"""

from __future__ import annotations

import json

import pandas as pd

from diffscale.cells import Paths, expand

COLUMNS = [
    "cell", "study", "model", "params", "sampler", "steps", "guidance", "search", "verifier", "search_budget",
    "prompt_set", "nfe_per_image", "nfe_per_image_nocfg", "gflops_per_nfe", "gflops_per_image",
    "verifier_gflops_per_image", "total_gflops_per_image", "relative_cost", "seconds_per_image",
    "metric", "value", "ci_low", "ci_high", "n",
]


def reference_model(params: dict, model_params: dict[str, int]) -> str:
    """Mei et al. normalise cost by one reference model; by default the study's largest denoiser."""
    return params.get("report", {}).get("reference_model") or max(model_params, key=model_params.get)


def tidy_table(params: dict, paths: Paths) -> pd.DataFrame:
    cells = expand(params)
    ledgers = {c.id: json.loads((paths.samples(c) / "ledger.json").read_text()) for c in cells}
    model_params = {c.model: ledgers[c.id]["denoiser_params"] for c in cells}
    gflops = {c.model: ledgers[c.id]["gflops_per_nfe"] for c in cells}
    reference_gflops = gflops[reference_model(params, model_params)]
    rows = []
    for cell in cells:
        ledger = ledgers[cell.id]
        base = {
            "cell": cell.id, "study": params["study"], "model": cell.model, "params": ledger["denoiser_params"],
            "sampler": cell.sampler, "steps": cell.steps, "guidance": cell.guidance, "search": cell.search,
            "verifier": cell.verifier, "search_budget": cell.budget, "prompt_set": cell.prompt_set,
            "nfe_per_image": ledger["nfe_per_image"], "nfe_per_image_nocfg": ledger["nfe_per_image_nocfg"],
            "gflops_per_nfe": ledger["gflops_per_nfe"], "gflops_per_image": ledger["gflops_per_image"],
            # Search also pays for its verifier; the joint frontier compares configurations on the total.
            "verifier_gflops_per_image": ledger["verifier_gflops_per_image"],
            "total_gflops_per_image": ledger["gflops_per_image"] + ledger["verifier_gflops_per_image"],
            # Mei et al.'s sampling cost: normalised denoiser cost x evaluations (CFG not counted).
            "relative_cost": ledger["gflops_per_nfe"] / reference_gflops * ledger["nfe_per_image_nocfg"],
            "seconds_per_image": ledger["seconds_per_image"],
        }
        for score in json.loads(paths.scores(cell).read_text()):
            rows.append(base | {k: score[k] for k in ("metric", "value", "ci_low", "ci_high", "n")})
    return pd.DataFrame(rows, columns=COLUMNS)
