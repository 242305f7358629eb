"""Loading and validating a study's parameters; resolving named entries.

Every engine (Snakemake, DVC, the CLI, the tests) reads a study through `load`, so a wrong key, type or
value is reported once, naming the key and what is allowed, before any job starts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

DEFAULTS: dict[str, Any] = {
    "device": "auto",
    "threads": 1,
    "execution": {"attention": "sdpa", "compile": False, "channels_last": False},
    "toyworld": {
        "dataset": {"size": 20000, "pair_probability": 0.5},
        "reference_size": 1000,
        "autoencoder": {"width": 16, "steps": 600, "batch_size": 32, "lr": 3e-3, "kl_weight": 1e-6},
        "text_encoder": {"width": 64, "layers": 2, "steps": 300, "batch_size": 128, "lr": 2e-3},
        "denoiser": {"steps": 600, "batch_size": 64, "lr": 2e-3, "uncond_probability": 0.1},
        "oracle": {"width": 16, "steps": 1200, "batch_size": 128, "lr": 3e-3},
        "judge": {"width": 16, "steps": 1200, "batch_size": 128, "lr": 3e-3},
        "clip": {"width": 64, "layers": 2, "steps": 400, "batch_size": 128, "lr": 1e-3},
    },
    "sampling": {"batch_size": 256, "replicates": 1, "jobs": "block"},
    "scoring": {
        "metrics": ["fid", "kid", "clip_score", "compositional_accuracy", "oracle_confidence"],
        "bootstrap": 200,
        "confidence": 0.95,
    },
    "report": {},
    "verifiers": {},
    "search": {
        "zero-order": {"radius": 0.5, "neighbours": 3, "restart": "keep"},
        "paths": {"copies": 2, "start": 0.5, "forward": 1, "backward": 2},
        "fk-steering": {"lambda": 10.0, "potential": "difference", "interval": 2, "select": "best"},
        "self_consistency_level": 0.5,
    },
}


class ParamsError(ValueError):
    """A study file that cannot run; the message names the key and what is allowed."""


def schema() -> dict:
    return json.loads(resources.files("diffscale").joinpath("schemas/params.schema.json").read_text())


def _merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _key_path(path) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _explain(error: jsonschema.ValidationError) -> str:
    """One line a person can act on: the key, what was wrong, what is allowed."""
    key = _key_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        return f"{key}: unknown key(s) {unknown}; allowed keys: {allowed}"
    if error.validator == "enum":
        return f"{key}: {error.instance!r} is not allowed; allowed values: {error.validator_value}"
    if error.validator == "required":
        return f"{key}: {error.message}"
    return f"{key}: {error.message}"


def validate(params: dict, source: str = "params") -> None:
    """Schema validation plus the cross-references a schema cannot express."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        lines = "\n".join(f"  - {_explain(e)}" for e in errors)
        raise ParamsError(f"{source}: invalid study parameters:\n{lines}")
    problems = []
    for i, grid in enumerate(params["grids"]):
        for field, known in (("models", params["models"]), ("prompt_sets", params["prompt_sets"])):
            for name in grid[field]:
                if name not in known:
                    problems.append(f"grids.{i}.{field}: {name!r} is not defined; defined: {sorted(known)}")
    problems += _search_problems(params) + _real_scoring_problems(params)
    reference = params.get("report", {}).get("reference_model")
    if reference is not None and reference not in params["models"]:
        problems.append(f"report.reference_model: {reference!r} is not defined; defined: {sorted(params['models'])}")
    if params.get("report", {}).get("reference_steps") is not None:
        steps = {s for grid in params["grids"] for s in grid["steps"]}
        if params["report"]["reference_steps"] not in steps:
            problems.append(f"report.reference_steps: {params['report']['reference_steps']} is not a step count of any grid; "
                            f"allowed: {sorted(steps)}")
    if problems:
        raise ParamsError(f"{source}: invalid study parameters:\n" + "\n".join(f"  - {p}" for p in problems))


def _real_scoring_problems(params: dict) -> list[str]:
    """Real prompt sets are scored by FID against fetched statistics and by a real CLIP, if configured."""
    real = sorted(n for n, p in params["prompt_sets"].items() if not p["kind"].startswith("toy-"))
    if not real:
        return []
    scoring = params.get("scoring", {})
    metrics = scoring.get("metrics", DEFAULTS["scoring"]["metrics"])
    problems = []
    if all(not p["kind"].startswith("toy-") for p in params["prompt_sets"].values()):
        extra = [m for m in metrics if m not in ("fid", "clip_score", "inception_score")]
        if extra:
            problems.append(f"scoring.metrics: {extra} need the toy world; real prompt sets {real} allow: "
                            "['clip_score', 'fid', 'inception_score']")
    needs = {"fid": ("fid_reference", "inception"), "clip_score": ("clip",), "inception_score": ("inception",)}
    for metric, keys in needs.items():
        for key in keys:
            if metric in metrics and key not in scoring:
                problems.append(f"scoring.{key}: required to score {metric} on real prompt sets {real}")
    return problems


def _search_problems(params: dict) -> list[str]:
    """Verifier names must exist, and each algorithm needs a sampler and verifiers it can work with."""
    from diffscale.sampling.samplers import SAMPLERS
    from diffscale.search import ALGORITHMS

    problems, verifiers = [], params.get("verifiers", {})
    for name, spec in verifiers.items():
        for member in spec.get("members", []):
            if member not in verifiers or member == name:
                problems.append(f"verifiers.{name}.members: {member!r} is not another defined verifier; defined: {sorted(verifiers)}")
    def needs_intermediate(name, seen=()):
        spec = verifiers.get(name, {})
        return spec.get("kind") == "self-consistency" or any(
            needs_intermediate(m, seen + (name,)) for m in spec.get("members", []) if m not in seen)
    for prompt_set, names in params.get("scoring", {}).get("verifier_metrics", {}).items():
        where = f"scoring.verifier_metrics.{prompt_set}"
        if prompt_set not in params["prompt_sets"]:
            problems.append(f"{where}: not a prompt set; defined: {sorted(params['prompt_sets'])}")
        for name in names:
            if name not in verifiers:
                problems.append(f"{where}: {name!r} is not defined under `verifiers`; defined: {sorted(verifiers)}")
            elif needs_intermediate(name):
                problems.append(f"{where}: {name!r} needs x0 predictions, which a finished image does not have")
            elif name in params.get("scoring", {}).get("metrics", []):
                problems.append(f"{where}: {name!r} is also a metric name; rename the verifier")
    for i, grid in enumerate(params["grids"]):
        search = grid.get("search")
        if not search:
            continue
        for name in search["verifiers"]:
            if name not in verifiers:
                problems.append(f"grids.{i}.search.verifiers: {name!r} is not defined under `verifiers`; defined: {sorted(verifiers)}")
        for algorithm in search["algorithms"]:
            needs = ALGORITHMS[algorithm].needs
            if needs != "any":
                allowed = sorted(n for n, s in SAMPLERS.items() if getattr(s, needs))
                for sampler in grid["samplers"]:
                    if sampler not in allowed:
                        problems.append(f"grids.{i}.samplers: {algorithm} search needs a {needs} sampler, not {sampler!r}; "
                                        f"allowed: {allowed}")
            if not ALGORITHMS[algorithm].whole_trajectories:
                for name in search["verifiers"]:
                    if needs_intermediate(name):
                        problems.append(f"grids.{i}.search: verifier {name!r} compares a whole trajectory's x0 predictions, "
                                        f"which {algorithm} search never has; use it with random or zero-order")
    return problems


def resolve(raw: dict, source: str = "params") -> dict:
    """Validate the file as written, then fill in defaults (defaults never hide a typo)."""
    validate(raw, source)
    return _merge(DEFAULTS, raw)


def load(path: str | Path) -> dict:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such study file") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of study parameters, got {type(raw).__name__}")
    return resolve(raw, str(path))


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from any JSON-able parts: seeds are derived, never implicit."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def toy_training(params: dict, component: str, model: str | None = None) -> dict:
    """Training settings of a toy component; a model entry may override the shared denoiser recipe."""
    settings = dict(params["toyworld"][component])
    if model is not None:
        settings.update(params["models"][model].get("training", {}))
    return settings
