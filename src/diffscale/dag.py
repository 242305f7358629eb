"""The DAG's nodes, described once for both engines.

Each node names its CLI verb, the files it reads and writes, and the parameter keys it depends on.
Snakemake rules read a node's inputs and parameter values from here; the DVC generator writes the same
nodes as stages. So both engines run the same commands on the same files and rerun on the same changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from diffscale.cells import Block, Paths, blocks, uses_toyworld


@dataclass(frozen=True)
class Node:
    stage: str  # DVC stage name
    args: tuple[str, ...]  # arguments of `diffscale --params FILE ...`
    deps: tuple[str, ...]
    outs: tuple[str, ...]
    keys: tuple[str, ...] = field(default=())  # dotted parameter keys the node depends on
    cells: tuple[str, ...] = field(default=())  # the cells a block node writes (they come from `grids`)

    def param_values(self, params: dict) -> dict:
        """The values behind `keys`, and the block's cells: what Snakemake compares to decide a rerun."""
        return {key: lookup(params, key) for key in self.keys} | ({"cells": list(self.cells)} if self.cells else {})


def lookup(params: dict, key: str):
    value = params
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _toy(artifact: str, deps: tuple[str, ...], outs: tuple[str, ...], keys: tuple[str, ...]) -> Node:
    return Node(f"toy-{artifact}", ("toy", artifact), deps, outs, ("seed",) + keys)


def toy_nodes(params: dict, paths: Paths) -> list[Node]:
    dataset = str(paths.dataset)
    return [
        _toy("dataset", (), (dataset,), ("toyworld.dataset",)),
        _toy("reference", (), (str(paths.reference),), ("toyworld.dataset", "toyworld.reference_size")),
        _toy("autoencoder", (dataset,), (str(paths.component("autoencoder")),), ("toyworld.autoencoder",)),
        _toy("text-encoder", (dataset,), (str(paths.component("text_encoder")),), ("toyworld.text_encoder",)),
        _toy("oracle", (dataset, str(paths.reference)), (str(paths.component("oracle")),), ("toyworld.oracle",)),
        _toy("judge", (dataset, str(paths.reference)), (str(paths.component("judge")),), ("toyworld.judge",)),
        _toy("clip", (dataset,), (str(paths.component("clip")),), ("toyworld.clip",)),
    ]


def prompt_node(params: dict, paths: Paths, name: str) -> Node:
    spec = params["prompt_sets"][name]
    if spec["kind"].startswith("toy-"):
        return Node(f"prompts@{name}", ("toy", "prompts", "--name", name), (), (str(paths.prompt_set(name)),),
                    ("seed", f"prompt_sets.{name}", "toyworld.dataset"))
    return Node(f"eval-prompts@{name}", ("prompts", "--name", name), (), (str(paths.prompt_set(name)),),
                ("seed", f"prompt_sets.{name}"))


def fetch_nodes(params: dict, paths: Paths) -> list[Node]:
    """Evaluation inputs of real prompt sets: FID reference statistics and the Inception weights."""
    return [Node(f"fetch-{what.replace('_', '-')}", ("fetch", what.replace("_", "-")), (),
                 (str(paths.evaldata(params["scoring"][what]["input"])),), (f"scoring.{what}",))
            for what in ("fid_reference", "inception") if what in params["scoring"]]


def model_node(params: dict, paths: Paths, name: str) -> Node:
    entry = params["models"][name]
    if entry["source"] == "toy":
        deps = (str(paths.dataset), str(paths.component("autoencoder")), str(paths.component("text_encoder")))
        keys = ("seed", f"models.{name}", "toyworld.denoiser")
    else:
        deps, keys = (), (f"models.{name}",)
    # Families of DVC stages share one shape, so each model source is a family of its own.
    family = "model" if entry["source"] == "toy" else f"{entry['source']}-model"  # local-model@x, hf-model@x
    return Node(f"{family}@{name}", ("model", "--name", name), deps, (str(paths.model(name)),), keys)


def toy_judges(params: dict, paths: Paths) -> tuple[str, ...]:
    """The toy world's oracle and CLIP: search verifiers and metrics read them wherever the toy world is used."""
    return (str(paths.component("oracle")), str(paths.component("clip"))) if uses_toyworld(params) else ()


def sample_node(params: dict, paths: Paths, block: Block) -> Node:
    deps = (str(paths.model(block.model)), str(paths.prompt_set(block.prompt_set)))
    keys = ("seed", "sampling", "device", "execution", f"models.{block.model}")
    if block.search != "none":
        deps += toy_judges(params, paths)
        keys += (f"search.{block.search}", "search.self_consistency_level", "verifiers")
    # Search blocks also depend on their verifier; a DVC family needs one shape, so they are a family of their own.
    family = "sample" if block.search == "none" else "search"
    return Node(f"{family}@{block.id}", ("sample", "--block", block.id), deps, (str(paths.block_samples(block)),), keys,
                tuple(c.id for c in blocks(params)[block]))


def score_node(params: dict, paths: Paths, block: Block) -> Node:
    deps = [str(paths.block_samples(block)), str(paths.prompt_set(block.prompt_set))]
    if uses_toyworld(params):
        deps += [str(paths.reference), str(paths.component("judge")), *toy_judges(params, paths)]
    deps += [out for node in fetch_nodes(params, paths) for out in node.outs]
    keys = ("seed", "scoring") + (("verifiers",) if params["scoring"].get("verifier_metrics") else ())
    return Node(f"score@{block.id}", ("score", "--block", block.id), tuple(deps), (str(paths.block_scores(block)),),
                keys, tuple(c.id for c in blocks(params)[block]))


def aggregate_node(params: dict, paths: Paths) -> Node:
    study_blocks = list(blocks(params))
    deps = tuple(str(paths.block_samples(b)) for b in study_blocks) + tuple(str(paths.block_scores(b)) for b in study_blocks)
    return Node("aggregate", ("aggregate",), deps, (str(paths.metrics),), ("study", "report.reference_model"))


def report_node(params: dict, paths: Paths) -> Node:
    return Node("report", ("report",), (str(paths.metrics),), (str(paths.report_dir),), ("report",))


def nodes(params: dict, paths: Paths) -> list[Node]:
    """Every node of the study, in an order that respects dependencies."""
    out = toy_nodes(params, paths) if uses_toyworld(params) else []
    out += [prompt_node(params, paths, name) for name in params["prompt_sets"]]
    out += fetch_nodes(params, paths)
    out += [model_node(params, paths, name) for name in params["models"]]
    study_blocks = list(blocks(params))
    out += [sample_node(params, paths, b) for b in study_blocks]
    out += [score_node(params, paths, b) for b in study_blocks]
    return out + [aggregate_node(params, paths), report_node(params, paths)]
