"""Scoring a block of cells: every metric of the registry that applies to the prompt set, each with a
bootstrap confidence interval, plus the verifiers the study scores as metrics. Beside each cell's rows go
its per-image values and features (`<cell>.safetensors`), and once per block the reference the features
are compared with (`reference.safetensors`), so the report can compare cells pairwise (`metrics.paired`).

What the metrics read (reference features, judges, CLIP, Inception) is loaded on first use and shared
by the block's cells; the metrics themselves live in `diffscale.metrics` (`METRICS`).
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image

from diffscale import prompts as prompt_sets
from diffscale.atomic import atomic_directory
from diffscale.cache import CellCache, key_of, library_versions
from diffscale.cells import Block, Cell, Paths
from diffscale.codeversion import code_version
from diffscale.dag import score_inputs
from diffscale.lazy import lazy_import
from diffscale.manifest import content_hash, file_hash, verified
from diffscale.metrics import METRICS, paired
from diffscale.metrics.bootstrap import bootstrap_ci, mean_with_ci
from diffscale.metrics.distribution import FEATURE_METRICS
from diffscale.seeds import derive_seed
from diffscale.toyworld.arrays import load_arrays
from diffscale.verifiers import study_verifiers
from diffscale.verifiers.base import is_hub_spec, resolve_file

# A block whose cells are all in the cache restores them without importing torch, torch-fidelity or
# open_clip (seconds per job): only a job that scores loads them.
torch = lazy_import("torch")
clipscore = lazy_import("diffscale.metrics.clipscore")
fidelity = lazy_import("diffscale.metrics.fidelity")
judge = lazy_import("diffscale.toyworld.judge")
oracle = lazy_import("diffscale.toyworld.oracle")
scenes = lazy_import("diffscale.toyworld.scenes")


def load_cell_images(samples: Path) -> tuple[list[dict], list[Image.Image]]:
    records = [json.loads(line) for line in (samples / "records.jsonl").read_text().splitlines()]
    images = [Image.open(samples / r["file"]).convert("RGB") for r in records]
    return records, images


def resolve_pretrained(spec: str | None) -> str | None:
    """An open_clip tag stays a tag; a local file or `hf-hub:<repo>@<revision>:<file>` becomes a local path."""
    return str(resolve_file(spec)) if is_hub_spec(spec) else spec


PER_IMAGE = "per_image.safetensors"  # in a cell's cache entry, beside scores.json


class PromptSetScoring:
    """What the metrics of one prompt set read, each loaded on first use and shared by the block's cells.

    Toy prompt sets are judged in the toy world (oracle features for FID, the independent judge, the
    toy CLIP); real ones by torch-fidelity's Inception against fetched reference statistics and a real CLIP.
    """

    def __init__(self, params: dict, paths: Paths, prompt_set: str):
        self.params, self.paths = params, paths
        self.kind = params["prompt_sets"][prompt_set]["kind"]
        self.toy = self.kind.startswith("toy-")
        self.extractor = fidelity.TOY_EXTRACTOR if self.toy else fidelity.INCEPTION_EXTRACTOR

    @cached_property
    def extractor_weights(self) -> str:
        if self.toy:
            return str(verified(self.paths.component("oracle")))
        return str(self.paths.evaldata(self.params["scoring"]["inception"]["input"]))

    @cached_property
    def reference_features(self) -> torch.Tensor:
        images, _, _ = load_arrays(self.paths.reference)
        return fidelity.extract_features(images, self.extractor, self.extractor_weights)

    @cached_property
    def held_out_features(self) -> torch.Tensor:
        """Real toy images drawn afresh (neither training data nor reference), as many as the reference:
        the images of the FID/KID floor."""
        images, _, _ = scenes.sample_dataset(len(self.reference_features), held_out_seed(self.params),
                                             self.params["toyworld"]["dataset"]["pair_probability"])
        return fidelity.extract_features(images, self.extractor, self.extractor_weights)

    def reference(self) -> paired.Reference:
        """What paired FID/KID differences, the floor and FID-infinity compare the cells' features with."""
        statistics = self.reference_fid_statistics if self.toy else self.reference_statistics
        space = f"{self.extractor} ({fidelity.FEATURE_SPACE[self.extractor]}, {len(statistics['mu'])}-d)"
        if self.toy:
            return paired.Reference(statistics, space, self.reference_features, self.held_out_features)
        return paired.Reference(statistics, space)

    @cached_property
    def reference_radius(self) -> torch.Tensor:
        return fidelity.reference_k_radius(self.reference_features)

    @cached_property
    def reference_kid_kernel(self) -> np.ndarray:
        return fidelity.kid_reference_kernel(self.reference_features)

    @cached_property
    def reference_fid_statistics(self) -> dict:
        return fidelity.fid_features_to_statistics(self.reference_features)

    @cached_property
    def reference_statistics(self) -> dict:
        with np.load(self.paths.evaldata(self.params["scoring"]["fid_reference"]["input"])) as statistics:
            return {"mu": statistics["mu"], "sigma": statistics["sigma"]}

    @cached_property
    def oracle(self):
        return oracle.load(verified(self.paths.component("oracle")))

    @cached_property
    def judge(self):
        """The oracle may guide search, so the accuracy metric reads images with the independent judge."""
        return judge.load(verified(self.paths.component("judge")))

    @cached_property
    def clip(self) -> clipscore.OpenClipScorer:
        if self.toy:
            return clipscore.OpenClipScorer(f"local-dir:{verified(self.paths.component('clip'))}")
        spec = self.params["scoring"]["clip"]
        return clipscore.OpenClipScorer(spec["model"], resolve_pretrained(spec.get("pretrained")))

    @property
    def clip_backbone(self) -> str:
        if self.toy:
            return "toy CLIP (open_clip)"
        spec = self.params["scoring"]["clip"]
        return f"{spec['model']} ({spec.get('pretrained', 'no pretrained tag')})"


class CellImages:
    """One sampled cell as the metrics see it, with the bootstrap settings of the study."""

    def __init__(self, scoring: PromptSetScoring, samples: Path, labels_by_id: dict, seed: int, resamples: int,
                 confidence: float):
        self.scoring, self.seed, self.resamples, self.confidence = scoring, seed, resamples, confidence
        self.records, self.images = load_cell_images(samples)
        self.n = len(self.records)
        self.prompts = [r["prompt"] for r in self.records]
        self.labels = [labels_by_id[r["prompt_id"]] for r in self.records]  # toy prompts: each slot's ground truth
        self.keys = [(r["prompt_id"], r["replicate"]) for r in self.records]  # what pairs image i across cells

    @cached_property
    def pixels(self) -> np.ndarray:
        """(N, H, W, 3) uint8."""
        return np.stack([np.asarray(im) for im in self.images])

    @cached_property
    def tensors(self) -> torch.Tensor:
        """(N, 3, H, W) float in [0, 1], as verifiers take images."""
        return torch.from_numpy(self.pixels).permute(0, 3, 1, 2).float() / 255

    @cached_property
    def features(self) -> torch.Tensor:
        """Features of the FID layer of the prompt set's extractor."""
        return fidelity.extract_features(self.pixels, self.scoring.extractor, self.scoring.extractor_weights)

    @cached_property
    def logits(self) -> torch.Tensor:
        return fidelity.extract_features(self.pixels, self.scoring.extractor, self.scoring.extractor_weights,
                                         layer="logits_unbiased")

    @cached_property
    def precision_recall(self) -> fidelity.ResampledPrecisionRecall:
        return fidelity.ResampledPrecisionRecall(self.features, self.scoring.reference_features, self.scoring.reference_radius)

    def mean_with_ci(self, values: np.ndarray) -> dict:
        return mean_with_ci(values, self.resamples, self.confidence, self.seed)

    def with_ci(self, value: float, statistic, center: bool = False) -> dict:
        """`value` with the percentile CI of `statistic(indices)` over resampled images (centred on `value`
        for set statistics, see `bootstrap_ci`)."""
        low, high = bootstrap_ci(self.n, statistic, self.resamples, self.confidence, self.seed, value if center else None)
        return {"value": value, "ci_low": low, "ci_high": high, "n": self.n}


def metric_verifiers(params: dict, paths: Paths, prompt_set: str) -> dict:
    """Verifiers that also score the prompt set's cells as metrics (`scoring.verifier_metrics`), as Ma et al.
    evaluate DrawBench with Aesthetic, CLIPScore and ImageReward: the verifier x metric matrix of a real study."""
    names = params["scoring"].get("verifier_metrics", {}).get(prompt_set, [])
    return study_verifiers(params, paths, names, params["device"]) if names else {}


def wanted_metrics(params: dict, prompt_set: str) -> list[str]:
    """The study's metrics that apply to this prompt set's kind (`Metric.needs`), in the study's order."""
    kind = params["prompt_sets"][prompt_set]["kind"]
    return [m for m in params["scoring"]["metrics"] if METRICS[m].applies_to(kind)]


def held_out_seed(params: dict) -> int:
    return derive_seed(params["seed"], "scoring", "held-out")


def score_cell(params: dict, cell: Cell, images: CellImages, verifiers: dict) -> tuple[list[dict], paired.PerImage]:
    """The cell's score rows and its per-image data (features when a metric reads them, per-image values)."""
    rows, values = [], {}
    wanted = wanted_metrics(params, cell.prompt_set)
    for name in wanted:
        row = METRICS[name].compute(images)
        if "per_image" in row:
            values[name] = row.pop("per_image")
        rows.append({"cell": cell.id, "metric": name} | row)
    for name, verifier in verifiers.items():
        values[name] = verifier.score(images.tensors, images.prompts).double().numpy()
        rows.append({"cell": cell.id, "metric": name} | images.mean_with_ci(values[name]) | {"details": {"verifier": verifier.kind}})
    features = images.features if set(wanted) & set(FEATURE_METRICS) else None
    return rows, paired.PerImage(images.keys, features, values)


def block_inputs(params: dict, block: Block, paths: Paths) -> dict:
    """The parts of the score key that every cell of the block shares: the contents of what the metrics
    read, the scoring settings, the device, the code and the libraries."""
    deps, _ = score_inputs(params, paths, block.prompt_set)
    return {
        "inputs": {role: (content_hash(path) if Path(path).is_dir() else file_hash(path)) for role, path in deps.items()},
        "metrics": wanted_metrics(params, block.prompt_set), "bootstrap": params["scoring"]["bootstrap"],
        "confidence": params["scoring"]["confidence"], "seed": params["seed"],
        "verifier_metrics": {name: params["verifiers"][name]
                             for name in params["scoring"].get("verifier_metrics", {}).get(block.prompt_set, [])},
        "held_out": ({"seed": held_out_seed(params), "pair_probability": params["toyworld"]["dataset"]["pair_probability"]}
                     if params["prompt_sets"][block.prompt_set]["kind"].startswith("toy-") else None),
        "device": params["device"], "code": code_version("diffscale.metrics.score"),
        "libraries": library_versions("torch", "torch-fidelity", "open_clip_torch", "numpy"),
    }


def score_block(params: dict, block: Block, cells: list[Cell], paths: Paths) -> int:
    """Score the block's cells (from the cache where it has them); returns how many were scored now."""
    cache = CellCache(paths.cache)
    shared = block_inputs(params, block, paths)
    loaded: dict = {}  # judges, references and verifiers are loaded only if some cell must be scored

    def scoring() -> PromptSetScoring:
        if not loaded:
            torch.set_num_threads(params["threads"])
            loaded["scoring"] = PromptSetScoring(params, paths, block.prompt_set)
            loaded["verifiers"] = metric_verifiers(params, paths, block.prompt_set)
            loaded["labels"] = {p["id"]: p["labels"] for p in prompt_sets.read(paths.prompt_set(block.prompt_set))}
        return loaded["scoring"]

    def compute(cell: Cell, entry: Path) -> list[dict]:
        images = CellImages(scoring(), paths.samples(cell), loaded["labels"],
                            derive_seed(params["seed"], "bootstrap", cell.id), params["scoring"]["bootstrap"],
                            params["scoring"]["confidence"])
        rows, per_image = score_cell(params, cell, images, loaded["verifiers"])
        per_image.save(entry / PER_IMAGE)
        return rows

    def reference(entry: Path) -> list[dict]:
        scoring().reference().save(entry / paired.REFERENCE_FILE)
        return []

    computed = 0
    with atomic_directory(paths.block_scores(block)) as staging:
        if set(shared["metrics"]) & set(FEATURE_METRICS):
            _, entry, _ = cache.scores(block.id, key_of(shared | {"reference": block.prompt_set}), reference, kind="reference")
            shutil.copyfile(entry / paired.REFERENCE_FILE, staging / paired.REFERENCE_FILE)
        for cell in cells:
            key = key_of(shared | {"cell": cell.id, "samples": content_hash(paths.samples(cell))})
            rows, entry, fresh = cache.scores(cell.id, key, lambda entry, cell=cell: compute(cell, entry))
            (staging / f"{cell.id}.json").write_text(json.dumps(rows, indent=2, sort_keys=True))
            shutil.copyfile(entry / PER_IMAGE, staging / f"{cell.id}{paired.PER_IMAGE_SUFFIX}")
            computed += fresh
    return computed
