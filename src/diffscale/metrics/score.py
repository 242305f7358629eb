"""Scoring one cell: every requested metric, each with a bootstrap confidence interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
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
# Real prompt sets have reference statistics (not images) and no toy judges.
REAL_METRICS = ("fid", "clip_score", "inception_score")


def load_cell_images(samples: Path) -> tuple[list[dict], list[Image.Image]]:
    records = [json.loads(line) for line in (samples / "records.jsonl").read_text().splitlines()]
    images = [Image.open(samples / r["file"]).convert("RGB") for r in records]
    return records, images


class Judges:
    """The scoring networks and reference features, loaded once for a block of cells.

    Toy prompt sets are judged in the toy world (oracle features for FID, the independent judge, the
    toy CLIP); real ones by torch-fidelity's Inception against fetched reference statistics and a real CLIP.
    """

    def __init__(self, params: dict, paths: Paths, prompt_set: str, wanted: set[str]):
        toy = params["prompt_sets"][prompt_set]["kind"].startswith("toy-")
        self.oracle = self.judge = self.clip = None
        self.verifiers = metric_verifiers(params, paths, prompt_set)
        self.reference_features = self.reference_statistics = self.reference_radius = None
        self.extractor, self.extractor_weights = fidelity.TOY_EXTRACTOR, str(paths.component("oracle"))
        if not toy:
            self.extractor = fidelity.INCEPTION_EXTRACTOR
            if wanted & {"fid", "inception_score"}:
                self.extractor_weights = str(paths.evaldata(params["scoring"]["inception"]["input"]))
            if "fid" in wanted:
                with np.load(paths.evaldata(params["scoring"]["fid_reference"]["input"])) as statistics:
                    self.reference_statistics = {"mu": statistics["mu"], "sigma": statistics["sigma"]}
            if "clip_score" in wanted:
                spec = params["scoring"]["clip"]
                self.clip = clipscore.OpenClipScorer(spec["model"], resolve_pretrained(spec.get("pretrained")))
            return
        # The oracle may guide search, so the accuracy metric reads images with the independent judge.
        self.oracle = oracle.load(paths.component("oracle")) if "oracle_confidence" in wanted else None
        self.judge = judge.load(paths.component("judge")) if "compositional_accuracy" in wanted else None
        if wanted & set(DISTRIBUTION_METRICS):
            with np.load(paths.reference) as reference:
                self.reference_features = fidelity.extract_features(reference["images"], self.extractor, self.extractor_weights)
            self.reference_radius = fidelity.reference_k_radius(self.reference_features)
        self.clip = clipscore.OpenClipScorer(f"local-dir:{paths.component('clip')}") if "clip_score" in wanted else None


def metric_verifiers(params: dict, paths: Paths, prompt_set: str) -> dict:
    """Verifiers that also score the prompt set's cells as metrics (`scoring.verifier_metrics`), as Ma et al.
    evaluate DrawBench with Aesthetic, CLIPScore and ImageReward: the verifier x metric matrix of a real study."""
    names = params["scoring"].get("verifier_metrics", {}).get(prompt_set, [])
    if not names:
        return {}
    from diffscale.verifiers import study_verifiers

    return study_verifiers(params, paths, names, params["device"])


def resolve_pretrained(spec: str | None) -> str | None:
    """An open_clip tag stays a tag; a local file or `hf-hub:<repo>@<revision>:<file>` becomes a local path."""
    from diffscale.verifiers.base import is_hub_spec, resolve_file

    return str(resolve_file(spec)) if is_hub_spec(spec) else spec


def wanted_metrics(params: dict, prompt_set: str) -> list[str]:
    """Metrics of a prompt set: distribution metrics need prompts drawn like the reference data."""
    kind = params["prompt_sets"][prompt_set]["kind"]
    wanted = list(params["scoring"]["metrics"])
    if kind == "toy-compositional":
        wanted = [m for m in wanted if m not in DISTRIBUTION_METRICS]
    elif kind == "imagenet-classes":  # class labels: no caption for CLIP, no text-to-image FID reference
        wanted = [m for m in wanted if m == "inception_score"]
    elif not kind.startswith("toy-"):
        wanted = [m for m in wanted if m in ("fid", "clip_score")]
    return wanted + list(params["scoring"].get("verifier_metrics", {}).get(prompt_set, []))


def score_cell(params: dict, cell: Cell, samples: Path, labels_by_id: dict, judges: Judges) -> list[dict]:
    wanted = wanted_metrics(params, cell.prompt_set)
    records, images = load_cell_images(samples)
    pixels = np.stack([np.asarray(im) for im in images])
    labels = [labels_by_id[r["prompt_id"]] for r in records]  # toy prompts: the ground truth of each slot
    seed = derive_seed(params["seed"], "bootstrap", cell.id)
    resamples, confidence = params["scoring"]["bootstrap"], params["scoring"]["confidence"]
    results: dict[str, dict] = {}

    if judges.reference_features is not None and set(DISTRIBUTION_METRICS) & set(wanted):
        features = fidelity.extract_features(pixels, judges.extractor, judges.extractor_weights)
        details = {"feature_extractor": judges.extractor, "reference_n": len(judges.reference_features)}
        for name, value in fidelity.fidelity_metrics(features, judges.reference_features, wanted, resamples, confidence, seed,
                                                         judges.reference_radius).items():
            results[name] = value | {"details": details}
    if judges.reference_statistics is not None and "fid" in wanted:
        features = fidelity.extract_features(pixels, judges.extractor, judges.extractor_weights)
        fid = fidelity.fid_from_statistics(features, judges.reference_statistics, resamples, confidence, seed)
        results["fid"] = fid | {"details": {"feature_extractor": judges.extractor, "reference": "fetched statistics"}}

    for name, classifier, judge_name in (("compositional_accuracy", judges.judge, "toy judge (independent of the oracle)"),
                                         ("oracle_confidence", judges.oracle, "toy oracle")):
        if classifier is not None:
            values = compositional.per_image(classifier, pixels, labels)[name]
            results[name] = mean_with_ci(values, resamples, confidence, seed) | {"details": {"judge": judge_name}}

    if "inception_score" in wanted:
        logits = fidelity.extract_features(pixels, judges.extractor, judges.extractor_weights, layer="logits_unbiased")
        results["inception_score"] = fidelity.inception_score(logits, resamples, confidence, seed) | {
            "details": {"feature_extractor": judges.extractor, "splits": 10}}
    if judges.verifiers:
        tensors = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
        prompts = [r["prompt"] for r in records]
        for name, verifier in judges.verifiers.items():
            values = verifier.score(tensors, prompts).double().numpy()
            results[name] = mean_with_ci(values, resamples, confidence, seed) | {"details": {"verifier": verifier.kind}}
    if judges.clip is not None and "clip_score" in wanted:
        values = judges.clip.cosine(images, [r["prompt"] for r in records]).numpy()
        results["clip_score"] = mean_with_ci(values, resamples, confidence, seed) | {
            "details": {"backbone": "toy CLIP (open_clip)", "convention": clipscore.CONVENTION}
        }
    return [{"cell": cell.id, "metric": name} | results[name] for name in wanted if name in results]


def score_block(params: dict, block: Block, cells: list[Cell], paths: Paths) -> Path:
    judges = Judges(params, paths, block.prompt_set, set(wanted_metrics(params, block.prompt_set)))
    labels_by_id = {p["id"]: p["labels"] for p in prompt_sets.read(paths.prompt_set(block.prompt_set))}
    with atomic_directory(paths.block_scores(block)) as staging:
        for cell in cells:
            rows = score_cell(params, cell, paths.samples(cell), labels_by_id, judges)
            (staging / f"{cell.id}.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
    return paths.block_scores(block)
