"""The DAG's nodes, described once for both engines, and the plan each node's job reads.

A node names its CLI verb, the files it reads (by role) and writes, the parameter keys it reads, the
code it runs and the resources it needs. Snakemake rules (`workflow/rules/dag.smk`) and DVC stages
(`diffscale.dvc`) are generated from these nodes, so both engines run the same commands on the same files.

A node's *plan* is the JSON its job reads instead of the study file: exactly the parameter values the
node reads (defaults resolved), its cells, and the version of its code. Both engines rerun a node when
its plan changes and only then (or when a file it reads changes), so they agree on what an edit
invalidates, and a plan is never rewritten under a running job: Snakemake names each plan by its hash,
DVC writes them in its own `plan` stage. Which cells a rerun really computes is the cell cache's business.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from diffscale import verifiers as verifier_registry
from diffscale.atomic import write_text
from diffscale.cells import Block, Paths, blocks, uses_toyworld
from diffscale.codeversion import code_version
from diffscale.metrics import METRICS


@dataclass(frozen=True)
class Node:
    family: str  # Snakemake rule and DVC stage family, e.g. "sample"
    key: str  # which member of the family (a block, model or prompt set); "" for one-of-a-kind nodes
    args: tuple[str, ...]  # the CLI verb and its arguments, after `diffscale --plan PLAN`
    deps: dict[str, str | tuple[str, ...]]  # role -> what it reads that other nodes write
    outs: dict[str, str]  # role -> what it writes
    reads: tuple[str, ...]  # the parameter keys it reads: its plan carries exactly their values
    code: tuple[str, ...]  # entry modules of the code it runs: their version is part of its plan
    directories: frozenset[str] = frozenset()  # roles of `outs` that are directories
    cells: tuple[str, ...] = ()  # the cells it samples, scores or collects
    threads: int = 1
    gpu: int = 0
    mem_mb: int = 2000
    # Run beside the workflow, not as a cluster job: seconds of work, or a download, which needs the network that
    # compute nodes of most clusters lack.
    local: bool = False
    priority: int = 0  # among ready jobs, higher first: the path to the first sampling job goes first
    rule: str = ""  # the Snakemake rule that builds it, when several families share one (default: the family)

    @property
    def rule_name(self) -> str:
        return (self.rule or self.family).replace("-", "_")

    @property
    def name(self) -> str:
        return f"{self.family}@{self.key}" if self.key else self.family

    def dep_paths(self) -> list[str]:
        return [p for value in self.deps.values() for p in ((value,) if isinstance(value, str) else value)]


def lookup(params: dict, key: str):
    value = params
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def restrict(params: dict, keys: tuple[str, ...]) -> dict:
    """The study reduced to `keys` (dotted), plus its name: what one node may read."""
    out = {"study": params["study"]}
    for key in keys:
        value = lookup(params, key)
        if value is None:
            continue
        *parents, last = key.split(".")
        target = out
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = copy.deepcopy(value)
    return out


# -- the nodes ------------------------------------------------------------------------------------------

TRAIN_CODE = ("diffscale.toyworld.build",)
CRITICAL = 10  # priority of the nodes on the way to the first sampling job
# Host memory of jobs that load real checkpoints (a pipeline's weights pass through host memory) or real
# scoring networks (Inception, a CLIP); toy jobs peak near 1.3 GB.
REAL_MODEL_MB, REAL_SCORING_MB = 32000, 16000


def toy_nodes(params: dict, paths: Paths) -> list[Node]:
    dataset, reference = str(paths.dataset), str(paths.reference)

    def component(name: str, deps: dict, priority: int) -> Node:
        key = name.replace("-", "_")
        return Node(f"toy-{name}", "", ("toy", name), deps, {"component": str(paths.component(key))},
                    ("seed", "threads", f"toyworld.{key}"), TRAIN_CODE, frozenset({"component"}),
                    threads=params["threads"], priority=priority)

    return [
        Node("toy-dataset", "", ("toy", "dataset"), {}, {"dataset": dataset}, ("seed", "toyworld.dataset"), TRAIN_CODE,
             frozenset({"dataset"}), local=True, priority=CRITICAL),
        Node("toy-reference", "", ("toy", "reference"), {}, {"reference": reference},
             ("seed", "toyworld.dataset", "toyworld.reference_size"), TRAIN_CODE, frozenset({"reference"}), local=True),
        # Every denoiser waits for the autoencoder and the text encoder; the judges only search and scoring need.
        component("autoencoder", {"dataset": dataset}, CRITICAL),
        component("text-encoder", {"dataset": dataset}, CRITICAL),
        component("oracle", {"dataset": dataset, "reference": reference}, 0),
        component("judge", {"dataset": dataset, "reference": reference}, 0),
        component("clip", {"dataset": dataset}, 0),
    ]


def prompt_node(params: dict, paths: Paths, name: str) -> Node:
    out = {"prompts": str(paths.prompt_set(name))}
    if params["prompt_sets"][name]["kind"].startswith("toy-"):
        return Node("toy-prompts", name, ("toy", "prompts", "--name", name), {}, out,
                    ("seed", f"prompt_sets.{name}", "toyworld.dataset"), TRAIN_CODE, local=True, rule="prompts")
    return Node("eval-prompts", name, ("prompts", "--name", name), {}, out, ("seed", f"prompt_sets.{name}"),
                ("diffscale.evaldata",), local=True, rule="prompts")


def fetch_nodes(params: dict, paths: Paths) -> list[Node]:
    """Evaluation inputs of real prompt sets: FID reference statistics and the Inception weights."""
    return [Node(f"fetch-{what.replace('_', '-')}", "", ("fetch", what.replace("_", "-")), {},
                 {"input": str(paths.evaldata(params["scoring"][what]["input"]))}, (f"scoring.{what}",),
                 ("diffscale.evaldata",), local=True)
            for what in ("fid_reference", "inception") if what in params["scoring"]]


def model_node(params: dict, paths: Paths, name: str) -> Node:
    entry, out = params["models"][name], {"model": str(paths.model(name))}
    if entry["source"] == "toy" and "distilled_from" in entry:
        # A student reads its teacher's folder (whose autoencoder and text encoder it keeps) and the training data.
        deps = {"dataset": str(paths.dataset), "teacher": str(paths.model(entry["distilled_from"]))}
        return Node("distilled-model", name, ("model", "--name", name), deps, out,
                    ("seed", "threads", "toyworld.distillation", f"models.{name}"), TRAIN_CODE, frozenset({"model"}),
                    threads=params["threads"], rule="model", priority=CRITICAL - 2)
    if entry["source"] == "toy":
        deps = {"dataset": str(paths.dataset), "autoencoder": str(paths.component("autoencoder")),
                "text_encoder": str(paths.component("text_encoder"))}
        return Node("model", name, ("model", "--name", name), deps, out,
                    ("seed", "threads", "toyworld.denoiser", f"models.{name}"), TRAIN_CODE, frozenset({"model"}),
                    threads=params["threads"], rule="model", priority=CRITICAL - 1)
    # Each source is a family of its own: DVC's foreach stages need members of one shape. A hub fetch (or a
    # local folder's record) is a local rule of its own: on a cluster it runs where the network is.
    return Node(f"{entry['source']}-model", name, ("model", "--name", name), {}, out, (f"models.{name}",),
                ("diffscale.models.hub", "diffscale.models.source"), frozenset({"model"}), local=True,
                rule="fetch-model")


def shaped(family: str, deps: dict, common: tuple[str, ...]) -> str:
    """The family of a node whose inputs vary: its base name and the roles beyond the common ones."""
    return "-".join([family, *sorted(set(deps) - set(common))])


def toy_component_deps(paths: Paths, names: set[str]) -> dict[str, str]:
    return {name: str(paths.component(name)) for name in sorted(names)}


def sample_node(params: dict, paths: Paths, block: Block, cells: list) -> Node:
    deps: dict = {"model": str(paths.model(block.model)), "prompts": str(paths.prompt_set(block.prompt_set))}
    reads = ("seed", "threads", "device", "execution", "sampling", f"models.{block.model}")
    if block.search != "none":
        verifiers = sorted({c.verifier for c in cells})
        members = verifier_registry.with_members(verifiers, params["verifiers"])
        deps |= toy_component_deps(paths, verifier_registry.toy_components(verifiers, params["verifiers"]))
        reads += (f"search.{block.search}",) + tuple(f"verifiers.{name}" for name in members)
    # A family's members read the same roles (DVC's foreach needs one shape): search blocks are named by
    # the toy components their verifier reads.
    return Node(shaped("sample" if block.search == "none" else "search", deps, ("model", "prompts")), block.id,
                ("sample", "--block", block.id), deps,
                {"samples": str(paths.block_samples(block))}, reads, ("diffscale.sampling.block",), frozenset({"samples"}),
                tuple(c.id for c in cells), threads=params["threads"], gpu=int(params["device"] != "cpu"), rule="sample",
                mem_mb=2000 if params["models"][block.model]["source"] == "toy" else REAL_MODEL_MB)


def score_inputs(params: dict, paths: Paths, prompt_set: str) -> tuple[dict[str, str], tuple[str, ...]]:
    """What scoring a prompt set reads: the inputs its metrics need there, and the verifiers scored as metrics."""
    kind = params["prompt_sets"][prompt_set]["kind"]
    needs = {need for name in params["scoring"]["metrics"] if METRICS[name].applies_to(kind)
             for need in METRICS[name].needs[kind]}
    names = params["scoring"].get("verifier_metrics", {}).get(prompt_set, [])
    specs = params.get("verifiers", {})
    toy = {n.partition(":")[2] for n in needs if n.startswith("toy:")} | verifier_registry.toy_components(names, specs)
    deps = {name: (str(paths.reference) if name == "reference" else str(paths.component(name))) for name in sorted(toy)}
    for need in sorted(needs):
        where, _, key = need.partition(":")
        if where == "scoring" and key in ("fid_reference", "inception"):
            deps[key] = str(paths.evaldata(params["scoring"][key]["input"]))
    reads = ("scoring.metrics", "scoring.bootstrap", "scoring.confidence") + tuple(
        f"scoring.{n.partition(':')[2]}" for n in sorted(needs) if n.startswith("scoring:"))
    if names:
        reads += (f"scoring.verifier_metrics.{prompt_set}",) + tuple(
            f"verifiers.{name}" for name in verifier_registry.with_members(names, specs))
    return deps, reads


def score_node(params: dict, paths: Paths, block: Block, cells: list) -> Node:
    inputs, reads = score_inputs(params, paths, block.prompt_set)
    deps = {"samples": str(paths.block_samples(block)), "prompts": str(paths.prompt_set(block.prompt_set))} | inputs
    if params["prompt_sets"][block.prompt_set]["kind"].startswith("toy-"):
        reads += ("toyworld.dataset",)  # the held-out real images of the FID/KID floor are drawn like the data
    return Node(shaped("score", deps, ("samples", "prompts")), block.id, ("score", "--block", block.id), deps,
                {"scores": str(paths.block_scores(block))},
                ("seed", "threads", "device", "sampling.jobs", f"prompt_sets.{block.prompt_set}") + reads,
                ("diffscale.metrics.score",), frozenset({"scores"}), tuple(c.id for c in cells),
                threads=params["threads"], gpu=int(params["device"] != "cpu"), rule="score",
                mem_mb=2000 if params["prompt_sets"][block.prompt_set]["kind"].startswith("toy-") else REAL_SCORING_MB)


def aggregate_node(params: dict, paths: Paths) -> Node:
    """The tables: metrics and timings from the blocks, training compute from the toy models' ledgers and the
    other models' entries."""
    study_blocks = blocks(params)
    sampled = {b.model for b in study_blocks}
    # A distilled model is charged its teacher's training too, so the teacher's ledger is read.
    models = sorted(sampled | {params["models"][m]["distilled_from"] for m in sampled
                               if params["models"][m]["source"] == "toy" and "distilled_from" in params["models"][m]})
    deps = {"samples": tuple(str(paths.block_samples(b)) for b in study_blocks),
            "scores": tuple(str(paths.block_scores(b)) for b in study_blocks),
            "models": tuple(str(paths.model(m)) for m in models if params["models"][m]["source"] == "toy")}
    reads = ("report.reference_model", "sampling.jobs") + tuple(
        f"models.{m}.{key}" for m in models for key in ("source", "training_flops", "distilled_from"))
    return Node("aggregate", "", ("aggregate",), deps,
                {"metrics": str(paths.metrics), "timings": str(paths.timings), "training": str(paths.training)},
                reads, ("diffscale.report.tidy",),
                cells=tuple(c.id for members in study_blocks.values() for c in members), local=True)


def report_node(params: dict, paths: Paths) -> Node:
    """The report reads the tidy tables, and the blocks' per-image data for paired comparisons of cells."""
    deps = {"metrics": str(paths.metrics), "timings": str(paths.timings), "training": str(paths.training),
            "scores": tuple(str(paths.block_scores(b)) for b in blocks(params))}
    return Node("report", "", ("report",), deps,
                {"report": str(paths.report_dir), "headline": str(paths.headline), "plots": str(paths.plots)},
                ("report", "seed", "scoring.bootstrap", "scoring.confidence"), ("diffscale.report",),
                frozenset({"report", "plots"}), local=True)


def nodes(params: dict, paths: Paths) -> list[Node]:
    """Every node of the study, in an order that respects dependencies."""
    out = toy_nodes(params, paths) if uses_toyworld(params) else []
    out += [prompt_node(params, paths, name) for name in params["prompt_sets"]]
    out += fetch_nodes(params, paths)
    out += [model_node(params, paths, name) for name in params["models"]]
    study_blocks = blocks(params)
    out += [sample_node(params, paths, b, cells) for b, cells in study_blocks.items()]
    out += [score_node(params, paths, b, cells) for b, cells in study_blocks.items()]
    return out + [aggregate_node(params, paths), report_node(params, paths)]


# -- plans ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What one job reads: the node, the parameter values it reads, its cells and the version of its code."""

    node: str
    args: tuple[str, ...]
    study: dict
    cells: tuple[str, ...] = ()
    code: str = ""
    inputs: tuple[str, ...] = ()  # the files and folders it reads that other nodes write

    @classmethod
    def of(cls, node: Node, params: dict) -> Plan:
        return cls(node.name, node.args, restrict(params, node.reads), node.cells, code_version(*node.code),
                   tuple(node.dep_paths()))

    @classmethod
    def from_json(cls, text: str) -> Plan:
        data = json.loads(text)
        return cls(data["node"], tuple(data["args"]), data["study"], tuple(data["cells"]), data["code"],
                   tuple(data["inputs"]))

    def to_json(self) -> str:
        return json.dumps({"node": self.node, "args": list(self.args), "study": self.study, "cells": list(self.cells),
                           "code": self.code, "inputs": list(self.inputs)}, indent=1, sort_keys=True) + "\n"

    @cached_property
    def digest(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]


def write_snakemake_plan(plan: Plan, path: str | Path) -> None:
    """Write a plan under its hashed name, once: a plan file is never rewritten, so a job's plan never
    changes under it."""
    path = Path(path)
    if path.stem != plan.digest:
        raise ValueError(f"{path}: not the name of this plan (digest {plan.digest})")
    if not path.exists():
        write_text(path, plan.to_json())


def missing_inputs(nodes: list[Node]) -> list[Node]:
    """Nodes whose outputs exist although an input that another node makes is missing: a killed forced run
    deleted it. Snakemake takes such a node as up to date and never remakes the missing file, so the caller
    marks the node's plan as new to have both run again."""
    made = {path for node in nodes for path in node.outs.values()}
    return [node for node in nodes
            if all(Path(out).exists() for out in node.outs.values())
            and any(path in made and not Path(path).exists() for path in node.dep_paths())]


def made_from_another_plan(node: Node, plan: Plan, paths: Paths) -> bool:
    """The node's outputs exist, but its job (of either engine) did not record making them from `plan`."""
    if not all(Path(out).exists() for out in node.outs.values()):
        return False
    record = paths.made_with(node.name)
    return not record.exists() or record.read_text().strip() != plan.digest
