# The study as the library sees it: validated parameters, paths, the DAG's nodes and each node's plan.
# The only files written here are plans, each under the hash of its content and never rewritten: a dry
# run, a lint or another study changes nothing a running job reads.
import functools
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.logging import logger

from diffscale import cluster, dag, estimate, locks
from diffscale.cells import Paths
from diffscale.config import read_study_file, resolve, study_warnings
from diffscale.errors import ParamsError

try:
    for study_file in workflow.overwrite_configfiles or ["params.yaml"]:
        read_study_file(study_file)  # duplicate keys, which Snakemake's YAML reader keeps silently
    PARAMS = resolve(config, " ".join(map(str, workflow.overwrite_configfiles)) or "params.yaml")
except ParamsError as error:  # one clear message, no traceback, before any job (or any file) is written
    print(f"diffscale: {error}", file=sys.stderr)
    sys.exit(2)
for warning in study_warnings(PARAMS):
    logger.warning(f"diffscale: {warning}")

# A run killed earlier left its lock behind: remove it if its process is gone (see diffscale.locks).
for stale in locks.remove_stale_locks(Path(".")):
    logger.warning(f"diffscale: removed the lock of a killed run ({stale.name}); resuming")

PATHS = Paths.of(PARAMS)
NODES = {node.name: node for node in dag.nodes(PARAMS, PATHS)}
PLANS = {name: dag.Plan.of(node, PARAMS) for name, node in NODES.items()}
RULES = {}  # Snakemake rule -> its nodes by key (sampling families of every shape share the rule `sample`)
for node in NODES.values():
    RULES.setdefault(node.rule_name, {})[node.key] = node


def plan_file(node):
    """Plans are named by their hash: an edit that changes a node's plan gives it a new input file."""
    return str(PATHS.snakemake_plan(node.family, node.key, PLANS[node.name].digest))


# Each node's plan is an input of its job, so an edit that changes a node's plan reruns it. Two kinds of
# outputs exist and yet are not current, and Snakemake would take them as up to date (touching the plan
# does not help: Snakemake ignores a newer input whose checksum it has recorded): outputs made from
# another plan (by a run of another study, or by DVC, of which Snakemake keeps no record), and outputs
# whose input a killed forced run deleted (Snakemake never remakes a missing intermediate file). The main
# process gives such a node a new *remake marker*, a small file written by the job `remake`, as a new input
# of its job, which reruns it once (a dry run lists both jobs and writes nothing; the cell cache makes the
# rerun cheap). A node's markers stay its inputs, so once rerun it is up to date again.
for node in NODES.values():
    dag.write_snakemake_plan(PLANS[node.name], plan_file(node))


def remake_markers(node):
    return sorted(map(str, Path(plan_file(node)).parent.glob("remake-*")))


REMAKE = {}  # node name -> its new remake marker
REMAKE_WHY = {}  # marker -> why its node is rerun
if workflow.is_main_process:
    stale = {node.name: "it was made from other parameters" for node in NODES.values()
             if dag.made_from_another_plan(node, PLANS[node.name], PATHS)}
    stale |= {node.name: "an input of it is missing" for node in dag.missing_inputs(list(NODES.values()))}
    for name, why in sorted(stale.items()):
        marker = Path(plan_file(NODES[name])).parent / f"remake-{len(remake_markers(NODES[name])) + 1}"
        REMAKE[name], REMAKE_WHY[str(marker)] = str(marker), why
        logger.info(f"diffscale: remaking {name}: {why}")


def node_inputs(rule):
    def inputs(wildcards):
        node = RULES[rule][wildcards.get("key", "")]
        markers = remake_markers(node) + ([REMAKE[node.name]] if node.name in REMAKE else [])
        return ({"plan": plan_file(node), "remade": markers}
                | {role: list(p) if isinstance(p, tuple) else p for role, p in node.deps.items()})

    return inputs


def node_verb(rule):
    """The CLI verb and arguments of the node a job builds, quoted for the shell."""
    return lambda wildcards: shlex.join(RULES[rule][wildcards.get("key", "")].args)


def pattern(node, path):
    """A member's path with its key as the `{key}` wildcard, so one rule serves the family."""
    return path.replace(node.key, "{key}") if node.key else path


def log_file(family, key=""):
    return str(PATHS.root / "logs" / family / f"{key or family}.log")


def gpu_resources(gpus):
    """Resources of a job asking for `gpus` GPUs, as the cluster wants them asked for: DIFFSCALE_SLURM_GPU
    (gpus, gpus:<model>, gres, gres:<model>) and DIFFSCALE_SLURM_GPU_PARTITION (workflow/profiles/slurm/README.md)."""
    if not gpus:
        return {"gpu": 0}
    setting = os.environ.get("DIFFSCALE_SLURM_GPU", "").strip() or "gpus"
    syntax, _, model = setting.partition(":")
    if syntax not in ("gpus", "gres") or ":" in model:
        print(f"diffscale: DIFFSCALE_SLURM_GPU={setting!r}: expected gpus, gpus:<model>, gres or gres:<model>",
              file=sys.stderr)
        sys.exit(2)
    partition = os.environ.get("DIFFSCALE_SLURM_GPU_PARTITION", "").strip()
    out = {"slurm_partition": partition} if partition else {}
    if syntax == "gres":  # --gres=gpu[:model]:n; the plugin would also send --gpus=n if `gpu` stayed set
        return out | {"gpu": 0, "gres": ":".join(["gpu", *filter(None, [model]), str(gpus)])}
    return out | {"gpu": gpus} | ({"gpu_model": model} if model else {})


@functools.cache
def sample_minutes():
    """Slurm `runtime` of GPU sampling jobs from the real architectures' FLOPs, computed once and only when asked."""
    return estimate.block_minutes(PARAMS)
