"""Scoring one cell: every requested metric, each with a bootstrap confidence interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from diffscale import prompts as prompt_sets
from diffscale.atomic import atomic_directory
from diffscale.cells import Block, Cell, Paths
from diffscale.config import derive_seed
from diffscale.metrics import clipscore, compositional, fidelity
from diffscale.metrics.bootstrap import mean_with_ci
from diffscale.toyworld import judge, oracle

# Metrics that compare against the data distribution need prompts drawn like the data.
DISTRIBUTION_METRICS = ("fid", "kid", "precision", "recall")


def load_cell_images(samples: Path) -> tuple[list[dict], list[Image.Image]]:
    records = [json.loads(line) for line in (samples / "records.jsonl").read_text().splitlines()]
    images = [Image.open(samples / r["file"]).convert("RGB") for r in records]
    return records, images


class Judges:
    """The scoring networks and reference features, loaded once for a block of cells."""

    def __init__(self, params: dict, paths: Paths, wanted: set[str]):
        self.oracle_dir = str(paths.component("oracle"))
        # The oracle may guide search, so the accuracy metric reads images with the independent judge.
        self.oracle = oracle.load(paths.component("oracle")) if "oracle_confidence" in wanted else None
        self.judge = judge.load(paths.component("judge")) if "compositional_accuracy" in wanted else None
        self.reference_features = None
        if wanted & set(DISTRIBUTION_METRICS):
            with np.load(paths.reference) as reference:
                self.reference_features = fidelity.extract_features(reference["images"], fidelity.TOY_EXTRACTOR, self.oracle_dir)
        self.clip = clipscore.OpenClipScorer(f"local-dir:{paths.component('clip')}") if "clip_score" in wanted else None


def wanted_metrics(params: dict, prompt_set: str) -> list[str]:
    wanted = list(params["scoring"]["metrics"])
    if params["prompt_sets"][prompt_set]["kind"] != "toy-captions":
        wanted = [m for m in wanted if m not in DISTRIBUTION_METRICS]
    return wanted


def score_cell(params: dict, cell: Cell, samples: Path, labels_by_id: dict, judges: Judges) -> list[dict]:
    wanted = wanted_metrics(params, cell.prompt_set)
    records, images = load_cell_images(samples)
    pixels = np.stack([np.asarray(im) for im in images])
    labels = [labels_by_id[r["prompt_id"]] for r in records]
    seed = derive_seed(params["seed"], "bootstrap", cell.id)
    resamples, confidence = params["scoring"]["bootstrap"], params["scoring"]["confidence"]
    results: dict[str, dict] = {}

    if judges.reference_features is not None and set(DISTRIBUTION_METRICS) & set(wanted):
        features = fidelity.extract_features(pixels, fidelity.TOY_EXTRACTOR, judges.oracle_dir)
        details = {"feature_extractor": fidelity.TOY_EXTRACTOR, "reference_n": len(judges.reference_features)}
        for name, value in fidelity.fidelity_metrics(features, judges.reference_features, wanted, resamples, confidence, seed).items():
            results[name] = value | {"details": details}

    for name, classifier, judge_name in (("compositional_accuracy", judges.judge, "toy judge (independent of the oracle)"),
                                         ("oracle_confidence", judges.oracle, "toy oracle")):
        if classifier is not None:
            values = compositional.per_image(classifier, pixels, labels)[name]
            results[name] = mean_with_ci(values, resamples, confidence, seed) | {"details": {"judge": judge_name}}

    if judges.clip is not None and "clip_score" in wanted:
        values = judges.clip.cosine(images, [r["prompt"] for r in records]).numpy()
        results["clip_score"] = mean_with_ci(values, resamples, confidence, seed) | {
            "details": {"backbone": "toy CLIP (open_clip)", "convention": clipscore.CONVENTION}
        }
    return [{"cell": cell.id, "metric": name} | results[name] for name in wanted if name in results]


def score_block(params: dict, block: Block, cells: list[Cell], paths: Paths) -> Path:
    judges = Judges(params, paths, set(wanted_metrics(params, block.prompt_set)))
    labels_by_id = {p["id"]: p["labels"] for p in prompt_sets.read(paths.prompt_set(block.prompt_set))}
    with atomic_directory(paths.block_scores(block)) as staging:
        for cell in cells:
            rows = score_cell(params, cell, paths.samples(cell), labels_by_id, judges)
            (staging / f"{cell.id}.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
    return paths.block_scores(block)
