"""Loading and validating a study's parameters; resolving named entries.

Every engine (Snakemake, DVC, the CLI, the tests) reads a study through `load` or `resolve`, so a wrong
key, type or value is reported once, naming the key and what is allowed, before any job starts. The
plug-in parts of the schema, their defaults and the checks across plug-ins (an algorithm's sampler, a
verifier's x0 predictions, a metric's inputs) come from the registries; this module sits above them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from diffscale import schema as study_schema
from diffscale import verifiers as verifier_registry
from diffscale.cells import uses_toyworld
from diffscale.errors import ParamsError
from diffscale.metrics import METRICS
from diffscale.models.source import local_folder_problem
from diffscale.sampling.samplers import SAMPLERS, model_kind
from diffscale.search import ALGORITHMS
from diffscale.verifiers import VERIFIERS

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
        "distillation": {"steps": 300, "batch_size": 64, "lr": 5e-4, "skip": 20, "guidance": [1.5, 8.0],
                         "ema_decay": 0.95, "huber_c": 1e-3},
        "oracle": {"width": 16, "steps": 1200, "batch_size": 128, "lr": 3e-3},
        "judge": {"width": 16, "steps": 1200, "batch_size": 128, "lr": 3e-3},
        "clip": {"width": 64, "layers": 2, "steps": 400, "batch_size": 128, "lr": 1e-3},
    },
    "sampling": {"batch_size": 256, "replicates": 1, "jobs": "block"},
    "scoring": {
        "metrics": ["fid", "kid", "clip_score", "compositional_accuracy", "caption_probability", "oracle_confidence"],
        "bootstrap": 200,
        "confidence": 0.95,
    },
    "report": {},
    "verifiers": {},
}


def defaults() -> dict:
    """The defaults above plus each search algorithm's, from its registry entry."""
    return DEFAULTS | {"search": {name: algorithm.defaults for name, algorithm in ALGORITHMS.items()}}


def schema() -> dict:
    return study_schema.build()


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
    if error.validator == "const":
        return f"{key}: {error.instance!r} is not allowed; allowed value: {error.validator_value!r}"
    return f"{key}: {error.message}"


def _schema_problems(raw: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    return list(dict.fromkeys(_explain(e) for e in errors))


def _reference_problems(params: dict) -> list[str]:
    """Names a grid or the report uses must be defined."""
    problems = []
    for i, grid in enumerate(params["grids"]):
        for field, known in (("models", params["models"]), ("prompt_sets", params["prompt_sets"])):
            for name in grid[field]:
                if name not in known:
                    problems.append(f"grids.{i}.{field}: {name!r} is not defined; defined: {sorted(known)}")
    reference = params["report"].get("reference_model")
    if reference is not None and reference not in params["models"]:
        problems.append(f"report.reference_model: {reference!r} is not defined; defined: {sorted(params['models'])}")
    if params["report"].get("reference_steps") is not None:
        steps = {s for grid in params["grids"] for s in grid["steps"]}
        if params["report"]["reference_steps"] not in steps:
            problems.append(f"report.reference_steps: {params['report']['reference_steps']} is not a step count of any grid; "
                            f"allowed: {sorted(steps)}")
    return problems


def _model_problems(params: dict) -> list[str]:
    """A local model's folder must be there, a diffusers pipeline, with safetensors weights only; a toy model's
    training FLOPs are counted (its training ledger), never stated."""
    problems = [f"models.{name}.path: {problem}" for name, entry in params["models"].items()
                if entry["source"] == "local" and (problem := local_folder_problem(entry))]
    return problems + [f"models.{name}.training_flops: a toy model counts its training FLOPs (training-ledger.json "
                       "beside its weights); the key is for local and hf models: remove it"
                       for name, entry in params["models"].items() if entry["source"] == "toy" and "training_flops" in entry]


def distillation_teachers(params: dict) -> list[str]:
    """The models a toy model may be distilled from: toy diffusion (v-prediction) models not distilled themselves."""
    return [name for name, entry in params["models"].items() if entry["source"] == "toy" and "distilled_from" not in entry
            and entry.get("objective", "v-prediction") == "v-prediction"]


def distilled_toy(entry: dict) -> bool:
    return entry["source"] == "toy" and "distilled_from" in entry


def _distillation_problems(params: dict) -> list[str]:
    """A toy student names a toy v-prediction teacher of the study and takes its width, objective and the shared
    recipe; its guidance is embedded (the student's input). Other sources' `distilled_from` is a label."""
    problems, teachers = [], distillation_teachers(params)
    for name, entry in params["models"].items():
        if not distilled_toy(entry):
            continue
        if entry["distilled_from"] not in teachers:
            problems.append(f"models.{name}.distilled_from: {entry['distilled_from']!r} is not a toy v-prediction model "
                            f"of this study; allowed: {teachers}")
        for key in ("width", "objective", "training"):
            if key in entry:
                problems.append(f"models.{name}.{key}: a distilled toy model takes its teacher's width and objective and "
                                "the recipe toyworld.distillation; remove the key")
        if entry.get("guidance", "embedded") != "embedded":
            problems.append(f"models.{name}.guidance: a distilled toy model takes the guidance scale as an input; "
                            "allowed value: 'embedded' (the default for it)")
    return problems


def _inherit_from_teachers(params: dict) -> None:
    """Write out what a toy student takes from its teacher (its width) and that its guidance is embedded, so that
    every reader (estimates, node plans, the report) sees them like any other model's."""
    for entry in params["models"].values():
        if distilled_toy(entry):
            entry |= {"width": params["models"][entry["distilled_from"]]["width"], "guidance": "embedded"}


def known_model_kind(entry: dict) -> str | None:
    """"diffusion" or "flow" where the study says it before anything is fetched: a toy model's objective, a
    local folder's scheduler config; None for a hub model (its sampler is checked when it loads)."""
    if entry["source"] == "toy":
        return "flow" if entry.get("objective") == "rectified-flow" else "diffusion"
    config = Path(entry.get("path", "")).expanduser() / "scheduler" / "scheduler_config.json"
    if entry["source"] == "local" and config.is_file():
        return model_kind(json.loads(config.read_text()))
    return None


def _sampler_problems(params: dict) -> list[str]:
    """A flow-matching model needs a flow sampler and a diffusion model a diffusion one (`Sampler.serves`); a
    distilled toy model needs a consistency sampler, and a consistency sampler a distilled model."""
    problems = []
    for i, grid in enumerate(params["grids"]):
        for model in (m for m in grid["models"] if m in params["models"]):  # undefined ones: `_reference_problems`
            entry = params["models"][model]
            kind, toy = known_model_kind(entry), entry["source"] == "toy"
            fits = [name for name, s in SAMPLERS.items()
                    if s.serves == kind and (not toy or s.consistency == distilled_toy(entry))]
            for sampler in grid["samplers"]:
                if kind is not None and SAMPLERS[sampler].serves != kind:
                    problems.append(f"grids.{i}.samplers: {sampler!r} samples {SAMPLERS[sampler].serves} models, but "
                                    f"{model!r} is a {kind} model; samplers for it: {fits}")
                elif toy and SAMPLERS[sampler].consistency != distilled_toy(entry):
                    what = "a consistency-distilled" if distilled_toy(entry) else "not a consistency-distilled"
                    problems.append(f"grids.{i}.samplers: {sampler!r} cannot sample {model!r}, {what} model; "
                                    f"samplers for it: {fits}")
    return problems


def _verifier_problems(params: dict) -> list[str]:
    """Members must be other defined verifiers without cycles; toy verifiers need the toy world."""
    specs, problems = params["verifiers"], []
    for name, spec in specs.items():
        for member in VERIFIERS[spec["kind"]].members(spec):
            if member not in specs or member == name:
                problems.append(f"verifiers.{name}.members: {member!r} is not another defined verifier; "
                                f"defined: {sorted(set(specs) - {name})}")
    if problems:
        return problems
    for name in specs:  # a -> b -> a
        path, todo = [name], list(VERIFIERS[specs[name]["kind"]].members(specs[name]))
        while todo:
            member = todo.pop()
            if member == name:
                return [f"verifiers.{name}.members: the members form a cycle back to {name!r}"]
            if member not in path:
                path.append(member)
                todo += VERIFIERS[specs[member]["kind"]].members(specs[member])
    for name in specs:
        levels = verifier_registry.intermediate_levels(name, specs)
        if len(levels) > 1:
            problems.append(f"verifiers.{name}: its members compare x0 predictions at different levels {sorted(levels)}")
        needed = verifier_registry.toy_components([name], specs)
        if needed and not uses_toyworld(params):
            problems.append(f"verifiers.{name}: reads the toy world's {sorted(needed)}, but this study has no toy "
                            "models or toy prompt sets; give the kind a real model")
    return problems


def _search_problems(params: dict) -> list[str]:
    """Each algorithm needs a sampler and verifiers it can work with, and options that can run."""
    problems, specs = [], params["verifiers"]
    for name, options in params["search"].items():
        steps = sorted({s for grid in params["grids"] if name in (grid.get("search") or {}).get("algorithms", [])
                        for s in grid["steps"]})
        for problem in ALGORITHMS[name].problems(options, steps[0] if steps else 1):
            problems.append(f"search.{name}.{problem}")
    for i, grid in enumerate(params["grids"]):
        search = grid.get("search")
        if not search:
            continue
        for name in search["verifiers"]:
            if name not in specs:
                problems.append(f"grids.{i}.search.verifiers: {name!r} is not defined under `verifiers`; defined: {sorted(specs)}")
        for algorithm_name in search["algorithms"]:
            algorithm = ALGORITHMS[algorithm_name]
            if algorithm.needs != "any":
                allowed = [n for n, s in SAMPLERS.items() if getattr(s, algorithm.needs)]
                for sampler in grid["samplers"]:
                    if sampler not in allowed:
                        problems.append(f"grids.{i}.samplers: {algorithm_name} search needs a {algorithm.needs} sampler, "
                                        f"not {sampler!r}; allowed: {allowed}")
            if not algorithm.whole_trajectories:
                for name in search["verifiers"]:
                    if name in specs and verifier_registry.intermediate_levels(name, specs):
                        problems.append(f"grids.{i}.search: verifier {name!r} compares a whole trajectory's x0 predictions, "
                                        f"which {algorithm_name} search never has; use it with "
                                        f"{[n for n, a in ALGORITHMS.items() if a.whole_trajectories]}")
    return problems


def _scoring_problems(params: dict) -> list[str]:
    """Every metric must apply to some prompt set, with the evaluation inputs it reads there configured."""
    scoring, problems = params["scoring"], []
    kinds = {name: spec["kind"] for name, spec in params["prompt_sets"].items()}
    for metric_name in scoring["metrics"]:
        metric = METRICS[metric_name]
        applies = sorted(n for n, kind in kinds.items() if metric.applies_to(kind))
        if not applies:
            problems.append(f"scoring.metrics: {metric_name!r} applies to prompt sets of kind {sorted(metric.needs)}, "
                            f"and this study has none (its prompt sets: {kinds})")
        for prompt_set in applies:
            for need in metric.needs[kinds[prompt_set]]:
                where, _, key = need.partition(":")
                if where == "scoring" and key not in scoring:
                    problems.append(f"scoring.{key}: required to score {metric_name} on prompt set {prompt_set!r}")
    for prompt_set, names in scoring.get("verifier_metrics", {}).items():
        where = f"scoring.verifier_metrics.{prompt_set}"
        if prompt_set not in params["prompt_sets"]:
            problems.append(f"{where}: not a prompt set; defined: {sorted(params['prompt_sets'])}")
        for name in names:
            if name not in params["verifiers"]:
                problems.append(f"{where}: {name!r} is not defined under `verifiers`; defined: {sorted(params['verifiers'])}")
            elif verifier_registry.intermediate_levels(name, params["verifiers"]):
                problems.append(f"{where}: {name!r} needs x0 predictions, which a finished image does not have")
            elif name in METRICS:
                problems.append(f"{where}: {name!r} is also a metric name; rename the verifier")
    return list(dict.fromkeys(problems))


def study_warnings(params: dict) -> list[str]:
    """Settings that run but do not do what their name says (a search that never searches, a distilled model
    asked for a guidance scale it never saw, ...)."""
    found = []
    low, high = params["toyworld"]["distillation"]["guidance"]
    for i, grid in enumerate(params["grids"]):
        if any(distilled_toy(params["models"][m]) for m in grid["models"] if m in params["models"]):
            found += [f"grids.{i}.guidance: {g} is outside toyworld.distillation.guidance [{low}, {high}], the scales "
                      "the distilled models were trained for" for g in grid["guidance"] if not low <= g <= high]
        for name in (grid.get("search") or {}).get("algorithms", []):
            for steps in grid["steps"]:
                found += [f"grids.{i}: search.{name}.{w}" for w in ALGORITHMS[name].warnings(params["search"][name], steps)]
    return list(dict.fromkeys(found))


def _resolve_verifiers(specs: dict) -> dict:
    """Each verifier spec with its kind's option defaults written out (they decide what it computes)."""
    out = {}
    for name, spec in specs.items():
        options = VERIFIERS[spec["kind"]].options
        out[name] = {key: option["default"] for key, option in options.items() if "default" in option} | spec
    return out


def resolve(raw: dict, source: str = "params") -> dict:
    """Validate the file as written, fill in defaults (defaults never hide a typo), then check across entries."""
    problems = _schema_problems(raw)
    if problems:
        raise ParamsError(f"{source}: invalid study parameters:\n" + "\n".join(f"  - {p}" for p in problems))
    params = _merge(defaults(), raw)
    params["verifiers"] = _resolve_verifiers(params["verifiers"])
    problems = _reference_problems(params) + _model_problems(params) + _distillation_problems(params)
    if not problems:
        _inherit_from_teachers(params)
    problems += _verifier_problems(params) + _search_problems(params) + _sampler_problems(params)
    problems += _scoring_problems(params)
    if problems:
        raise ParamsError(f"{source}: invalid study parameters:\n" + "\n".join(f"  - {p}" for p in problems))
    return params


class _StudyLoader(yaml.SafeLoader):
    """YAML that refuses a key written twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ParamsError(f"{self.name}:{key_node.start_mark.line + 1}: key {key!r} is written twice in one "
                                  f"mapping (first on line {seen[key]}); YAML would silently keep the last one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep)


def read_study_file(path: str | Path) -> dict:
    """The study file as written: a mapping, with syntax errors and duplicate keys named by file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: no such study file") from None
    loader = _StudyLoader(text)
    loader.name = str(path)
    try:
        raw = loader.get_single_data()
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ParamsError(f"{where}: not valid YAML: {getattr(error, 'problem', None) or error}") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of study parameters, got {type(raw).__name__}")
    return raw


def load(path: str | Path) -> dict:
    return resolve(read_study_file(path), str(path))
