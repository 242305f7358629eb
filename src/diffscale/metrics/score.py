"""Scoring one cell: every requested metric, each with a bootstrap confidence interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from diffscale import prompts as prompt_sets
from diffscale.atomic import write_text
from diffscale.cells import Cell, Paths
from diffscale.config import derive_seed
from diffscale.metrics import clipscore, compositional, fidelity
from diffscale.metrics.bootstrap import mean_with_ci
from diffscale.toyworld import oracle

# Metrics that compare against the data distribution need prompts drawn like the data.
DISTRIBUTION_METRICS = ("fid", "kid")


def load_cell_images(samples: Path) -> tuple[list[dict], list[Image.Image]]:
    records = [json.loads(line) for line in (samples / "records.jsonl").read_text().splitlines()]
    images = [Image.open(samples / r["file"]).convert("RGB") for r in records]
    return records, images


def score_cell(params: dict, cell: Cell, paths: Paths) -> Path:
    scoring = params["scoring"]
    wanted = list(scoring["metrics"])
    spec = params["prompt_sets"][cell.prompt_set]
    if spec["kind"] != "toy-captions":
        wanted = [m for m in wanted if m not in DISTRIBUTION_METRICS]
    records, images = load_cell_images(paths.samples(cell))
    pixels = np.stack([np.asarray(im) for im in images])
    by_id = {p["id"]: p for p in prompt_sets.read(paths.prompt_set(cell.prompt_set))}
    labels = [by_id[r["prompt_id"]]["labels"] for r in records]
    seed = derive_seed(params["seed"], "bootstrap", cell.id)
    resamples, confidence = scoring["bootstrap"], scoring["confidence"]
    results: dict[str, dict] = {}

    if {"fid", "kid"} & set(wanted):
        oracle_dir = str(paths.component("oracle"))
        with np.load(paths.reference) as reference:
            reference_features = fidelity.extract_features(reference["images"], fidelity.TOY_EXTRACTOR, oracle_dir)
        features = fidelity.extract_features(pixels, fidelity.TOY_EXTRACTOR, oracle_dir)
        for name, value in fidelity.fidelity_metrics(features, reference_features, wanted, resamples, confidence, seed).items():
            results[name] = value | {"details": {"feature_extractor": fidelity.TOY_EXTRACTOR, "reference_n": len(reference_features)}}

    if {"compositional_accuracy", "oracle_confidence"} & set(wanted):
        classifier = oracle.load(paths.component("oracle"))
        for name, values in compositional.per_image(classifier, pixels, labels).items():
            if name in wanted:
                results[name] = mean_with_ci(values, resamples, confidence, seed) | {"details": {"judge": "toy oracle"}}

    if "clip_score" in wanted:
        scorer = clipscore.OpenClipScorer(f"local-dir:{paths.component('clip')}")
        values = scorer.cosine(images, [r["prompt"] for r in records]).numpy()
        results["clip_score"] = mean_with_ci(values, resamples, confidence, seed) | {
            "details": {"backbone": "toy CLIP (open_clip)", "convention": clipscore.CONVENTION}
        }

    rows = [{"cell": cell.id, "metric": name} | results[name] for name in wanted if name in results]
    write_text(paths.scores(cell), json.dumps(rows, indent=2, sort_keys=True))
    return paths.scores(cell)
