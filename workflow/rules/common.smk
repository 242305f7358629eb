# Shared state of the workflow: the validated study, its paths and its DAG nodes (from the library).
import functools
import re

import yaml

from diffscale.cells import Paths
from diffscale.config import ParamsError, resolve
from diffscale import dag, estimate

try:
    PARAMS = resolve(config, "config")
except ParamsError as error:
    raise WorkflowError(str(error))

PATHS = Paths.of(PARAMS)
NODES = {node.stage: node for node in dag.nodes(PARAMS, PATHS)}
BLOCK_IDS = [stage.split("@", 1)[1] for stage in NODES if stage.split("@")[0] in ("sample", "search")]
GPUS = 0 if PARAMS["device"] == "cpu" else 1
TOY_PROMPT_SETS = [n for n, p in PARAMS["prompt_sets"].items() if p["kind"].startswith("toy-")]
EVAL_PROMPT_SETS = [n for n in PARAMS["prompt_sets"] if n not in TOY_PROMPT_SETS]


@functools.cache
def sample_minutes():
    """Slurm `runtime` of GPU sampling jobs from the real architectures' FLOPs, computed once and only when asked."""
    return estimate.block_minutes(PARAMS) if GPUS else {}


def study_file():
    """The study as Snakemake resolved it (configfile plus --config), for the CLI; rewritten only on change."""
    path = PATHS.root / "snakemake-params.yaml"
    text = yaml.safe_dump(config, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(path)


STUDY_FILE = study_file()


def node_inputs(stage):
    return lambda wildcards: list(NODES[stage.format(**wildcards)].deps)


def node_params(stage):
    return lambda wildcards: NODES[stage.format(**wildcards)].param_values(PARAMS)


def model_stage(wildcards):
    """Model nodes are named by source (`model@x`, `local-model@x`); find the one of this model."""
    return next(s for s in NODES if s.split("@")[-1] == wildcards.model and "model@" in s)


def sample_node(wildcards):
    """Sampling nodes are `sample@block`, or `search@block` for a search block (it also needs its verifier)."""
    return NODES.get(f"sample@{wildcards.block}") or NODES[f"search@{wildcards.block}"]


def one_of(names):
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(map(re.escape, names)) or "^$"


def log_file(*parts):
    return str(PATHS.root.joinpath("logs", *parts))


wildcard_constraints:
    block=one_of(BLOCK_IDS),
    model="[a-z0-9][a-z0-9.-]*",
    prompt_set="[a-z0-9][a-z0-9-]*",
