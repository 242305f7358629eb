"""How many prompts the paired comparison needs, measured on a finished default study (read only).

    python benchmarks/paired_power.py RUN_DIR OUT_DIR [--metric fid] [--sizes 20 40 80 160] [--draws 20]

RUN_DIR holds `params.yaml` and `results/<study>/` of a finished run. The script
1. reads the per-image data (oracle features, the judge's per-image compositional accuracy, the oracle's
   confidence) and block references that scoring wrote for the run's no-search cells of the prompt set;
   for a run made before scoring wrote them, it recomputes them with the scoring code into
   OUT_DIR/scores/<block>/ (kept between runs);
2. compares, for every crossover of the best model per budget by `--metric` (FID by default), the reading
   from the cells' own CIs (the runner-up's value inside the winner's CI means within noise) with the
   paired CI of the difference;
3. measures power: for k prompts out of the set (`--draws` seeded subsets per k), the share of subsets
   whose paired CI of the crossover's difference excludes zero, and the median widths of the paired
   and the unpaired CI.
It prints one JSON object (the numbers benchmarks/README.md quotes).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from diffscale import prompts as prompt_sets
from diffscale.cells import Paths, blocks
from diffscale.config import load
from diffscale.metrics import compositional, paired
from diffscale.metrics.score import CellImages, PromptSetScoring
from diffscale.report import analysis
from diffscale.report.comparisons import Comparisons, with_differences
from diffscale.report.tidy import load_metrics
from diffscale.seeds import derive_seed


def per_image_data(params: dict, paths: Paths, prompt_set: str, out: Path) -> list[Path]:
    """The block folders of the plain cells of `prompt_set` with their per-image files: the run's own where
    its scoring wrote them, else recomputed under `out`."""
    own = [paths.block_scores(block) for block in blocks(params)
           if block.prompt_set == prompt_set and block.search == "none"]
    if all((folder / paired.REFERENCE_FILE).exists() for folder in own):
        return own
    scoring = PromptSetScoring(params, paths, prompt_set)
    labels = {p["id"]: p["labels"] for p in prompt_sets.read(paths.prompt_set(prompt_set))}
    folders = []
    for block, cells in blocks(params).items():
        if block.prompt_set != prompt_set or block.search != "none":
            continue
        folder = out / "scores" / block.id
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder)
        if not (folder / paired.REFERENCE_FILE).exists():
            scoring.reference().save(folder / paired.REFERENCE_FILE)
        for cell in cells:
            target = folder / f"{cell.id}{paired.PER_IMAGE_SUFFIX}"
            if target.exists():
                continue
            images = CellImages(scoring, paths.samples(cell), labels, 0, 1, 0.95)
            judged = compositional.per_image(scoring.judge, images.pixels, images.labels)
            oracle = compositional.per_image(scoring.oracle, images.pixels, images.labels)
            values = {"compositional_accuracy": judged["correct"], "caption_probability": judged["probability"],
                      "oracle_confidence": oracle["probability"]}
            paired.PerImage(images.keys, images.features, values).save(target)
    return folders


def subset(cell: paired.PerImage, prompts: set) -> paired.PerImage:
    keep = [i for i, key in enumerate(cell.keys) if key[0] in prompts]
    return paired.PerImage([cell.keys[i] for i in keep], cell.features[keep],
                           {k: v[keep] for k, v in cell.values.items()})


def power(comparisons: Comparisons, metric: str, a: str, b: str, sizes: list[int], draws: int, seed: int) -> list[dict]:
    """Per prompt count k: share of k-prompt subsets whose paired CI of the difference excludes zero, widths."""
    first, second, reference = comparisons.per_image(a), comparisons.per_image(b), comparisons.reference(a)
    prompts = sorted({key[0] for key in first.keys})
    rows = []
    for k in sizes:
        excluded, paired_widths, unpaired_widths, differences = 0, [], [], []
        for draw in range(draws):
            rng = np.random.default_rng(derive_seed(seed, "power", a, b, k, draw))
            chosen = set(rng.choice(prompts, k, replace=False).tolist())
            x, y = subset(first, chosen), subset(second, chosen)
            args = (reference, comparisons.resamples, comparisons.confidence, derive_seed(seed, "power-ci", k, draw))
            p = paired.paired_difference(metric, x, y, *args)
            u = paired.unpaired_difference(metric, x, y, *args)
            excluded += not (p["diff_ci_low"] <= 0 <= p["diff_ci_high"])
            paired_widths.append(p["diff_ci_high"] - p["diff_ci_low"])
            unpaired_widths.append(u["diff_ci_high"] - u["diff_ci_low"])
            differences.append(p["difference"])
        rows.append({"prompts": k, "share_excluding_zero": excluded / draws,
                     "median_difference": float(np.median(differences)),
                     "median_paired_width": float(np.median(paired_widths)),
                     "median_unpaired_width": float(np.median(unpaired_widths))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--prompt-set", default="toy-captions")
    parser.add_argument("--metric", default="fid", help="the metric whose crossovers are tested (fid, compositional_accuracy, ...)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80, 160])
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--power", type=int, nargs="*", default=None,
                        help="which crossovers (0-based, in budget order) to measure power for (default: all)")
    args = parser.parse_args()
    out = args.out.resolve()
    os.chdir(args.run)  # the study's paths are relative to the run folder; nothing is written there
    params = load(Path("params.yaml"))
    paths = Paths.of(params)
    folders = per_image_data(params, paths, args.prompt_set, out)
    comparisons = Comparisons(folders, params["scoring"]["bootstrap"], params["scoring"]["confidence"], params["seed"])

    df = load_metrics(paths.metrics)
    df = analysis.without_search(df[df["prompt_set"] == args.prompt_set])
    best = analysis.best_model_per_budget(df, args.metric)
    changes = with_differences(analysis.crossovers(best), comparisons, args.metric, "to_cell", "from_cell")
    at_change = best.set_index("budget").loc[changes["budget"]]
    unpaired_noise = at_change["runner_up_value"].between(at_change["ci_low"], at_change["ci_high"]).to_numpy()
    changes = changes.assign(unpaired_within_noise=unpaired_noise)
    winners = with_differences(best, comparisons, args.metric, "cell", "runner_up_cell")
    result = {
        "metric": args.metric,
        "crossovers": changes[["budget", "from_model", "to_model", "difference", "diff_ci_low", "diff_ci_high",
                               "beyond_noise", "unpaired_within_noise"]].to_dict("records"),
        "crossovers_beyond_noise_paired": int(changes["beyond_noise"].astype(bool).sum()),
        "crossovers_beyond_noise_unpaired": int((~changes["unpaired_within_noise"]).sum()),
        "winners_called_paired": int(winners["beyond_noise"].map(lambda v: v is True).sum()),
        "budgets_with_runner_up": int(winners["runner_up_cell"].notna().sum()),
        "power": {f"{c.from_model} to {c.to_model} at {c.budget:.3g}":
                  power(comparisons, args.metric, c.to_cell, c.from_cell, args.sizes, args.draws, params["seed"])
                  for i, c in enumerate(changes.itertuples()) if args.power is None or i in args.power},
    }
    json.dump(result, sys.stdout, indent=1, default=lambda v: v.item() if hasattr(v, "item") else None)
    print()


if __name__ == "__main__":
    main()
