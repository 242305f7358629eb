"""Benchmark: how much of the size-vs-steps answer rests on the timestep spacing at few steps.

Method: on a finished toy study (its trained ladder, prompt set, judge, oracle and reference set, and its metrics
table for each model's cost per evaluation), every model samples the study's toy captions with DDIM at a few step
counts under both spacings, `ddim-leading` (Stable Diffusion's: a 1-step schedule evaluates t = 1, a 2-step one
t = 501 and 1) and `ddim-trailing` (the first step at t = 999, where the pure noise is), at one guidance scale and
the study's per-image seeds. Per cell: the judge's caption probability and accuracy, and FID in the oracle's
feature space against the reference set. Then, per spacing, the best model per sampling budget (Mei et al.'s cost)
by caption probability and by FID, and each crossover with the paired bootstrap CI (over prompts) of the new
winner minus the old.
Run after the study: `python benchmarks/spacing.py [--study params.yaml] [--steps 1 2 5 10] [--guidance 3]`
(about 5 minutes on 2 cores for the default study).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from diffscale import prompts as prompt_sets
from diffscale.cells import Paths
from diffscale.config import resolve
from diffscale.metrics import compositional, fidelity, paired
from diffscale.models.zoo import load_pipeline
from diffscale.report import analysis
from diffscale.sampling.block import image_seed, sample_pixels
from diffscale.toyworld import judge
from diffscale.toyworld.arrays import load_arrays

SPACINGS = ("leading", "trailing")
METRICS = ("caption_probability", "fid")


def sample_cells(params: dict, paths: Paths, prompt_set: str, steps: list[int], guidance: float):
    """Per (model, spacing, steps): the cell's per-image data (judge readings, oracle features)."""
    prompts = prompt_sets.read(paths.prompt_set(prompt_set))
    seeds = [image_seed(params["seed"], p, 0) for p in prompts]
    labels = [p["labels"] for p in prompts]
    reader = judge.load(paths.component("judge"))
    cells = {}
    for model in (m for m, e in params["models"].items() if e["source"] == "toy" and "distilled_from" not in e):
        pipeline = load_pipeline(paths.model(model), torch.device("cpu"))
        for spacing in SPACINGS:
            for n in steps:
                pixels = sample_pixels(pipeline, [p["prompt"] for p in prompts], f"ddim-{spacing}", n, guidance, seeds)
                judged = compositional.per_image(reader, pixels, labels)
                features = fidelity.extract_features(pixels, fidelity.TOY_EXTRACTOR, str(paths.component("oracle")))
                cells[model, spacing, n] = paired.PerImage(
                    [(p["id"], 0) for p in prompts], features,
                    {"caption_probability": judged["probability"], "compositional_accuracy": judged["correct"]})
                print(f"{model} {spacing} {n} steps: caption probability {judged['probability'].mean():.3f}", flush=True)
    return cells


def tidy(cells: dict, costs: pd.Series, params_of: pd.Series, reference: paired.Reference, prompt_set: str) -> pd.DataFrame:
    """The cells as the report's tidy table (one row per cell and metric), so `analysis` reads them."""
    rows = []
    for (model, spacing, steps), cell in cells.items():
        values = {metric: float(np.mean(v)) for metric, v in cell.values.items()}
        values["fid"] = fidelity.fid(cell.features, reference.statistics)
        for metric, value in values.items():
            rows.append({"cell": f"{model}__{spacing}__{steps}", "model": model, "params": params_of[model],
                         "sampler": f"ddim-{spacing}", "steps": steps, "guidance": 0.0, "search": "none",
                         "verifier": "none", "search_budget": 0, "prompt_set": prompt_set, "metric": metric,
                         "value": value, "ci_low": np.nan, "ci_high": np.nan, "relative_cost": costs[model] * steps})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--study", type=Path, default=Path("params.yaml"))
    parser.add_argument("--prompt-set", default="toy-captions")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = resolve(yaml.safe_load(args.study.read_text()))
    paths = Paths.of(params)
    table = pd.read_csv(paths.metrics)
    plain = table[(table["search"] == "none") & (table["steps"] > 0)].drop_duplicates("model")
    costs = (plain["relative_cost"] / plain["steps"]).set_axis(plain["model"])  # per step, CFG pair not counted
    params_of = plain.set_index("model")["params"]
    images, _, _ = load_arrays(paths.reference)
    reference_features = fidelity.extract_features(images, fidelity.TOY_EXTRACTOR, str(paths.component("oracle")))
    reference = paired.Reference(fidelity.fid_features_to_statistics(reference_features), "toy oracle", reference_features)
    cells = sample_cells(params, paths, args.prompt_set, args.steps, args.guidance)
    df = tidy(cells, costs, params_of, reference, args.prompt_set)
    by_id = {f"{m}__{s}__{n}": cell for (m, s, n), cell in cells.items()}

    wide = df.pivot_table(index=["sampler", "steps"], columns=["metric", "model"], values="value")
    print("\n" + wide[["caption_probability", "fid"]].round(3).to_markdown())
    for spacing in SPACINGS:
        for metric in METRICS:
            best = analysis.best_model_per_budget(df[df["sampler"] == f"ddim-{spacing}"], metric)
            changes = analysis.crossovers(best)
            print(f"\n{spacing}, by {metric}: winners {' -> '.join(dict.fromkeys(best['model']))}")
            for row in changes.itertuples():
                d = paired.paired_difference(metric, by_id[row.to_cell], by_id[row.from_cell], reference,
                                             params["scoring"]["bootstrap"], params["scoring"]["confidence"], params["seed"])
                beyond = d["diff_ci_low"] > 0 or d["diff_ci_high"] < 0
                print(f"  cost {row.budget:.3g}: {row.from_model} -> {row.to_model}, new minus old {d['difference']:+.3f} "
                      f"[{d['diff_ci_low']:+.3f}, {d['diff_ci_high']:+.3f}] {'beyond noise' if beyond else 'tie'}")


if __name__ == "__main__":
    main()
