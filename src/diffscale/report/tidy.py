"""The tidy tables: one row per cell and metric, with the cell's configuration and cost ledger.

`results/<study>/metrics.csv` is what every figure and table reads. It holds only what the parameters
decide, so the same study gives the same bytes on any run and either engine; the seconds a cell took
(a measurement of the machine, not a result) go to `timings.csv`, one row per cell. `training.csv` is
each model's training compute, one row per model: the counted FLOPs of a toy model's training ledger
(`toyworld.training`) or the FLOPs a real model's entry states; its FLOPs are also a column of metrics.csv,
its wall seconds only of training.csv. `distilled_from` is the teacher a distilled model's entry names (empty
for an undistilled model): the report compares the distilled ladder with the undistilled one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from diffscale.cells import Cell, Paths
from diffscale.manifest import LEDGER, verified_file

COLUMNS = [
    "cell", "study", "model", "params", "sampler", "steps", "guidance", "search", "verifier", "search_budget",
    "prompt_set", "nfe_per_image", "nfe_per_image_nocfg", "gflops_per_nfe", "gflops_per_image",
    "verifier_gflops_per_image", "total_gflops_per_image", "relative_cost", "training_flops", "distilled_from",
    "metric", "value", "ci_low", "ci_high", "n",
]
TIMING_COLUMNS = ["cell", "seconds_per_image", "device", "host"]
# `training_flops_source`: "counted" (a toy model's ledger), "stated" (the model entry) or empty (unknown).
TRAINING_COLUMNS = ["model", "training_flops", "distillation_flops", "training_flops_source", "training_steps",
                    "batch_size", "samples_seen", "trained_parameters", "training_seconds", "flops_not_included"]
STRING_COLUMNS = ["cell", "study", "model", "sampler", "search", "verifier", "prompt_set", "metric"]


def reference_model(params: dict, model_params: dict[str, int]) -> str:
    """Mei et al. normalise cost by one reference model; by default the study's largest denoiser."""
    return params.get("report", {}).get("reference_model") or max(model_params, key=model_params.get)


def training_table(params: dict, paths: Paths, models: list[str]) -> pd.DataFrame:
    """Each model's training compute: a toy model's ledger (checked against its folder's manifest), else the
    `training_flops` its entry states, else unknown (NaN). A toy student's training compute is its teacher's
    plus its own distillation (a distilled model cannot exist without its teacher); the steps, samples and
    seconds are the distillation's, and `distillation_flops` says how much of the total it was."""
    def ledger_of(model: str) -> dict:
        return json.loads(verified_file(paths.model(model), LEDGER).read_text())

    rows = []
    for model in models:
        entry = params["models"][model]
        if entry["source"] == "toy":
            ledger = ledger_of(model)
            teacher = entry.get("distilled_from")
            inherited = ledger_of(teacher)["training_flops"] if teacher else 0
            rows.append({"model": model, "training_flops": inherited + ledger["training_flops"],
                         "distillation_flops": ledger["training_flops"] if teacher else None,
                         "training_flops_source": "counted",
                         "training_steps": ledger["steps"], "batch_size": ledger["batch_size"],
                         "samples_seen": ledger["samples_seen"], "trained_parameters": ledger["parameters"],
                         "training_seconds": ledger["seconds"],
                         "flops_not_included": sum(ledger["not_included"].values())})
        else:
            stated = entry.get("training_flops")
            rows.append({"model": model, "training_flops": stated, "training_flops_source": "" if stated is None else "stated"})
    return pd.DataFrame(rows, columns=TRAINING_COLUMNS)


def tidy_table(params: dict, paths: Paths, cells: list[Cell], training: pd.DataFrame) -> pd.DataFrame:
    """`training`: the `training_table` of the cells' models."""
    training_flops = training.set_index("model")["training_flops"]
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
            "training_flops": training_flops[cell.model],
            # The teacher a distilled model's entry names; empty for an undistilled model.
            "distilled_from": params["models"][cell.model].get("distilled_from", ""),
        }
        for score in json.loads(paths.scores(cell).read_text()):
            rows.append(base | {k: score[k] for k in ("metric", "value", "ci_low", "ci_high", "n")})
    return pd.DataFrame(rows, columns=COLUMNS)


def timings_table(paths: Paths, cells: list[Cell]) -> pd.DataFrame:
    """Wall-clock seconds per image of each cell, as its ledger measured them (denoising, search and decoding)."""
    ledgers = [json.loads((paths.samples(c) / "ledger.json").read_text()) for c in cells]
    return pd.DataFrame([[c.id] + [ledger[k] for k in TIMING_COLUMNS[1:]] for c, ledger in zip(cells, ledgers)],
                        columns=TIMING_COLUMNS)


def load_metrics(path: Path) -> pd.DataFrame:
    """Read `metrics.csv` keeping "none" (no search, no verifier) a string rather than NaN."""
    df = pd.read_csv(path, dtype=dict.fromkeys(STRING_COLUMNS, str), keep_default_na=False,
                     na_values=["", "nan", "NaN"])
    # An empty teacher is "not distilled", not a missing value (tables written before the column have none).
    if "distilled_from" in df:
        df["distilled_from"] = df["distilled_from"].map(lambda teacher: "" if pd.isna(teacher) else str(teacher))
    return df
