"""The params schema: a hand-written base (`schemas/study.base.json`) plus what the plug-in registries say.

Sampler names, search algorithms and their options, verifier kinds and each kind's options, and metric
names come from their registries, so the schema cannot disagree with them. Validation builds it live
(a plug-in registered at run time validates); `diffscale schema` writes it to
`schemas/params.schema.json` for editors and readers, and a test keeps that file current.
"""

from __future__ import annotations

import copy
import json
from importlib import resources

from diffscale.metrics import METRICS
from diffscale.sampling.samplers import SAMPLERS
from diffscale.search import ALGORITHMS
from diffscale.verifiers import VERIFIERS

GENERATED = "schemas/params.schema.json"


def _unique_keys(pairs: list[tuple[str, object]]) -> dict:
    """JSON keeps the last of two equal keys without a word; in a hand-edited schema that hides a merge's twin."""
    keys = [key for key, _ in pairs]
    twins = sorted({key for key in keys if keys.count(key) > 1})
    if twins:
        raise ValueError(f"schemas/study.base.json: keys given twice in one object: {twins}")
    return dict(pairs)


def _base() -> dict:
    return json.loads(resources.files("diffscale").joinpath("schemas/study.base.json").read_text(),
                      object_pairs_hook=_unique_keys)


def build() -> dict:
    schema = copy.deepcopy(_BASE)
    schema["$defs"]["sampler"] |= {"enum": SAMPLERS.names()}
    grid_search = schema["properties"]["grids"]["items"]["properties"]["search"]["properties"]
    grid_search["algorithms"]["items"] |= {"enum": ALGORITHMS.names()}
    schema["properties"]["search"]["properties"] = {name: algorithm.schema() for name, algorithm in ALGORITHMS.items()}
    schema["properties"]["scoring"]["properties"]["metrics"]["items"] |= {"enum": METRICS.names()}
    verifier = schema["$defs"]["verifier"]
    verifier["properties"] = {"kind": {"type": "string", "enum": VERIFIERS.names()}}
    # Each kind validates its own options (a key of another kind is an unknown key, named with the allowed ones).
    verifier["allOf"] = [{"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]}, "then": cls.schema()}
                         for kind, cls in VERIFIERS.items()]
    return schema


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


_BASE = _base()
