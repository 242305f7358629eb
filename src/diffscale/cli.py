"""`diffscale <verb>`: the one interface that Snakemake rules, DVC stages and people call.

Study verbs (`validate`, `cells`, `estimate`, `schema`, `dvc-yaml`, `plan`) read a study file. Node
verbs (`toy`, `prompts`, `fetch`, `model`, `sample`, `score`, `aggregate`, `report`) build one node of
the DAG and read its *plan*: the engines pass `--plan FILE`; by hand, `--params FILE` computes the same
plan from the study. Every node verb writes exactly the outputs `diffscale.cells.Paths` names for it,
atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from pathlib import Path

from diffscale import cells as cells_module
from diffscale import evaldata, prompts
from diffscale.atomic import write_text
from diffscale.cache import ArtifactCache, key_of, library_versions
from diffscale.config import load, study_warnings
from diffscale.dag import Plan, nodes
from diffscale.errors import ParamsError
from diffscale.manifest import IntegrityError, content_hash, file_hash
from diffscale.models.hub import FetchError
from diffscale.seeds import derive_seed

log = logging.getLogger("diffscale")

TOY_ARTIFACTS = ("dataset", "reference", "prompts", "autoencoder", "text-encoder", "oracle", "judge", "clip")


TRAINING_LIBRARIES = ("torch", "diffusers", "transformers", "open_clip_torch", "numpy")
REPORT_LIBRARIES = ("pandas", "numpy", "matplotlib", "seaborn", "pillow", "jinja2", "torch", "torch-fidelity")


class NodeJob:
    """A node verb's view of its plan: the parameters it may read, their paths, its cells."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.params = plan.study
        self.paths = cells_module.Paths.of(self.params)
        self.cells = [cells_module.Cell.from_id(c) for c in plan.cells]

    def done(self) -> None:
        """Record which plan the node's outputs were made from: an engine that finds other outputs reruns it."""
        write_text(self.paths.made_with(self.plan.node), self.plan.digest + "\n")

    def artifact_key(self, libraries: tuple[str, ...] = TRAINING_LIBRARIES, with_study: bool = False) -> str:
        """What decides an artifact's bytes: the node, the parameters it reads, its code, its inputs' contents
        and the libraries. Not where its inputs lie, and not the study's name unless `with_study` (the report
        prints it), so that every study of a results tree with the same toy world (the default, toy-flow,
        toy-full) trains it once."""
        plan = self.plan
        return key_of({"node": plan.node, "args": list(plan.args), "code": plan.code,
                       "params": {key: value for key, value in plan.study.items() if with_study or key != "study"},
                       "inputs": [content_hash(path) if Path(path).is_dir() else file_hash(path) for path in plan.inputs],
                       "libraries": library_versions(*libraries)})

    def build(self, final: Path, build) -> None:
        """Build a trained or fetched artifact at `final`, or restore it from the artifact cache when the same
        parameters and inputs (by content) made it before, in whichever study and engine that was."""
        key = self.artifact_key()
        cache = ArtifactCache(self.paths.cache)
        if cache.restore(key, final):
            return log.info("%s: restored from the artifact cache", final)
        build()
        cache.store(key, final, self.plan.node)

    def block(self) -> cells_module.Block:
        block = self.paths.block_of(self.cells[0])
        if block.id != self.plan.args[-1]:
            raise ParamsError(f"plan of {self.plan.node}: its cells belong to block {block.id!r}")
        return block


def node_job(args, verb_args: tuple[str, ...]) -> NodeJob:
    """The plan of the node these arguments name: read from `--plan`, or computed from the study `--params`.

    Node verbs call it before importing numpy or torch: it fixes the threads of their math libraries to
    the study's `threads` (Snakemake exports them for its jobs, DVC does not), so that both engines sum in
    the same order and write the same bytes.
    """
    job = _node_job(args, verb_args)
    threads = str(job.params.get("threads", 1))
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = threads
    return job


def _node_job(args, verb_args: tuple[str, ...]) -> NodeJob:
    if args.plan:
        try:
            plan = Plan.from_json(Path(args.plan).read_text())
        except FileNotFoundError:
            raise ParamsError(f"{args.plan}: no such plan file") from None
        if plan.args != verb_args:
            raise ParamsError(f"{args.plan} is the plan of `diffscale {' '.join(plan.args)}`, "
                              f"not of `diffscale {' '.join(verb_args)}`")
        return NodeJob(plan)
    params = load(args.params)
    for node in nodes(params, cells_module.Paths.of(params)):
        if node.args == verb_args:
            return NodeJob(Plan.of(node, params))
    raise ParamsError(f"`diffscale {' '.join(verb_args)}` is no node of study {params['study']!r}; "
                      "`diffscale cells --json` lists its blocks, the study file its models and prompt sets")


# -- study verbs ------------------------------------------------------------------------------------------


def cmd_validate(args) -> None:
    params = load(args.params)
    for warning in study_warnings(params):
        print(f"diffscale: warning: {warning}", file=sys.stderr)
    print(f"{args.params}: study {params['study']!r} is valid: {len(cells_module.expand(params))} cells, "
          f"{len(params['models'])} models, {len(params['prompt_sets'])} prompt sets")


def cmd_cells(args) -> None:
    params = load(args.params)
    paths = cells_module.Paths.of(params)
    for cell in cells_module.expand(params):
        print(json.dumps(cell.as_dict() | {"samples": str(paths.samples(cell))}) if args.json else cell.id)


def cmd_estimate(args) -> None:
    from diffscale.estimate import summary

    table = summary(load(args.params), args.tflops)
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    print(f"\ntotal: {table['gpu_hours'].sum():,.0f} GPU-hours of denoising at {args.tflops:g} sustained TFLOP/s "
          "(text encoder, VAE, verifiers and scoring not included)")


def _write(text: str, output: str, what: str) -> None:
    if output == "-":
        sys.stdout.write(text)
    else:
        Path(output).write_text(text)
        log.info("wrote %s (%s)", output, what)


def cmd_schema(args) -> None:
    from diffscale import schema

    _write(schema.render(), args.output, "the params schema")


def cmd_dvc_yaml(args) -> None:
    from diffscale.dvc import render_dvc_yaml

    params = load(args.params)
    _write(render_dvc_yaml(params, args.params), args.output, f"{len(cells_module.expand(params))} cells")


def cmd_plan(args) -> None:
    """DVC's `plan` stage: every node's plan under its fixed name (DVC reruns a stage when its plan changes).
    It runs first, so it stops DVC, before any other stage, when dvc.yaml no longer matches the study."""
    from diffscale.dvc import stale_dvc_yaml

    params = load(args.params)
    if Path("dvc.yaml").exists() and (reason := stale_dvc_yaml(params, args.params, Path("dvc.yaml"))):
        raise ParamsError(reason)
    paths = cells_module.Paths.of(params)
    study_nodes = nodes(params, paths)
    for node in study_nodes:
        write_text(paths.dvc_plan(node.family, node.key), Plan.of(node, params).to_json())
    log.info("wrote the plans of %d nodes", len(study_nodes))


def cmd_verify(args) -> None:
    """Check every artifact of the study (toy components, models, cells) and the cell cache against their manifests."""
    from diffscale.manifest import verify_tree

    params = load(args.params)
    paths = cells_module.Paths.of(params)
    problems, checked = [], 0
    for root in (paths.root, paths.cache):
        count, found = verify_tree(root)
        checked, problems = checked + count, problems + found
    for problem in problems:
        print(problem)
    print(f"{checked} artifacts checked under {paths.root} and {paths.cache}: "
          + (f"{len(problems)} corrupt (delete them and rerun; a corrupt cache entry is recomputed by itself)"
             if problems else "all intact"))
    if problems:
        raise SystemExit(1)


# -- node verbs -------------------------------------------------------------------------------------------


def cmd_toy(args) -> None:
    verb = ("toy", args.artifact) + (("--name", args.name) if args.artifact == "prompts" else ())
    job = node_job(args, verb)
    from diffscale.toyworld import build

    if args.artifact == "prompts":
        build.build_prompt_set(job.params, job.paths, args.name)
        log.info("wrote %s", job.paths.prompt_set(args.name))
        return job.done()
    builders = {
        "dataset": (build.build_dataset, job.paths.dataset), "reference": (build.build_reference, job.paths.reference),
        "autoencoder": (build.build_autoencoder, job.paths.component("autoencoder")),
        "text-encoder": (build.build_text_encoder, job.paths.component("text_encoder")),
        "oracle": (build.build_oracle, job.paths.component("oracle")),
        "judge": (build.build_judge, job.paths.component("judge")), "clip": (build.build_clip, job.paths.component("clip")),
    }
    builder, final = builders[args.artifact]
    job.build(final, lambda: builder(job.params, job.paths))
    log.info("built toy %s for study %s", args.artifact, job.params["study"])
    job.done()


def cmd_prompts(args) -> None:
    job = node_job(args, ("prompts", "--name", args.name))
    spec = job.params["prompt_sets"][args.name]
    seed = derive_seed(job.params["seed"], "prompts", args.name)
    if spec["kind"] == "imagenet-classes":
        prompts.write(job.paths.prompt_set(args.name), prompts.imagenet_classes(spec["size"], seed))
    else:
        evaldata.fetch(spec["input"], job.paths.prompt_set(args.name), size=spec["size"], seed=seed,
                       allow_unverified=spec.get("allow_unverified", False), source=spec.get("source"))
    log.info("wrote %s", job.paths.prompt_set(args.name))
    job.done()


def cmd_fetch(args) -> None:
    job = node_job(args, ("fetch", args.input))
    spec = job.params["scoring"][args.input.replace("-", "_")]
    out = evaldata.fetch(spec["input"], job.paths.evaldata(spec["input"]), size=None, seed=0,
                         allow_unverified=spec.get("allow_unverified", False), source=spec.get("source"))
    log.info("fetched %s into %s", spec["input"], out)
    job.done()


def cmd_model(args) -> None:
    job = node_job(args, ("model", "--name", args.name))
    entry = job.params["models"][args.name]
    if entry["source"] == "toy":
        from diffscale.toyworld.build import build_denoiser, build_student

        build = build_student if "distilled_from" in entry else build_denoiser
        job.build(job.paths.model(args.name), lambda: build(job.params, job.paths, args.name))
    else:
        from diffscale.models.hub import prepare_model

        job.build(job.paths.model(args.name), lambda: prepare_model(entry, job.paths.model(args.name)))
    log.info("model %s ready at %s", args.name, job.paths.model(args.name))
    job.done()


def cmd_sample(args) -> None:
    job = node_job(args, ("sample", "--block", args.block))
    from diffscale.sampling.block import sample_block

    computed = sample_block(job.params, job.block(), job.cells, job.paths, progress=not args.quiet)
    log.info("block %s: %d cells sampled, %d from the cache", args.block, computed, len(job.cells) - computed)
    job.done()


def cmd_score(args) -> None:
    job = node_job(args, ("score", "--block", args.block))
    from diffscale.metrics.score import score_block

    computed = score_block(job.params, job.block(), job.cells, job.paths)
    log.info("block %s: %d cells scored, %d from the cache", args.block, computed, len(job.cells) - computed)
    job.done()


def cmd_aggregate(args) -> None:
    job = node_job(args, ("aggregate",))
    from diffscale.report.tidy import tidy_table, timings_table, training_table

    training = training_table(job.params, job.paths, sorted({c.model for c in job.cells}))
    table = tidy_table(job.params, job.paths, job.cells, training)
    write_text(job.paths.metrics, table.to_csv(index=False, float_format="%.6g"))
    write_text(job.paths.timings, timings_table(job.paths, job.cells).to_csv(index=False, float_format="%.6g"))
    write_text(job.paths.training, training.to_csv(index=False, float_format="%.6g"))
    log.info("wrote %s (%d rows, %d cells), %s and %s", job.paths.metrics, len(table), table["cell"].nunique(),
             job.paths.timings, job.paths.training)
    job.done()


def cmd_report(args) -> None:
    job = node_job(args, ("report",))
    from diffscale.report import build_report
    from diffscale.report.comparisons import Comparisons
    from diffscale.report.headline import write_headline
    from diffscale.report.tidy import load_metrics

    # The report is a function of its tables, parameters and code (equal inputs give equal bytes): a report made
    # from the same ones before (by the other engine, or a run of the same study before an edit was undone) is
    # restored from the cache instead of drawn again (seconds of figures).
    outputs = {"report": job.paths.report_dir, "headline": job.paths.headline, "plots": job.paths.plots}
    key = job.artifact_key(REPORT_LIBRARIES, with_study=True)
    cache = ArtifactCache(job.paths.cache)
    if cache.restore_outputs(key, outputs):
        log.info("restored %s, %s and %s from the cache (made from equal tables before)", *outputs.values())
        return job.done()
    report = job.params.get("report", {})
    steps, reference = report.get("reference_steps"), report.get("reference_model")
    comparisons = Comparisons([p for p in job.plan.inputs if Path(p).parent == job.paths.scores_root],
                              job.params["scoring"]["bootstrap"], job.params["scoring"]["confidence"], job.params["seed"])
    html = build_report(job.paths.metrics, job.paths.report_dir, title=f"diffscale study: {job.params['study']}",
                        reference_steps=steps, reference_model=reference, timings_csv=job.paths.timings,
                        training_csv=job.paths.training, comparisons=comparisons)
    write_headline(load_metrics(job.paths.metrics), job.paths.headline, job.paths.plots, steps, reference, comparisons)
    cache.store_outputs(key, outputs, "report")
    log.info("wrote %s, %s and %s", html, job.paths.headline, job.paths.plots)
    job.done()


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="diffscale",
        description="Measure how diffusion models spend inference compute: model size vs sampling steps, "
        "search over noises with verifiers, and the joint frontier. Every Snakemake rule and DVC stage "
        "calls one of these verbs; you can call them by hand too.",
        epilog="Typical use: `snakemake --cores all` (or `dvc repro`) runs the whole study; "
        "`diffscale cells` lists its cells; `diffscale sample --block ID` samples one block of them.",
    )
    top.add_argument("--params", default="params.yaml", help="study file (default: params.yaml)")
    top.add_argument("--plan", help="a node's plan file (what the engines pass to node verbs instead of the study)")
    top.add_argument("--quiet", action="store_true", help="no progress bars")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help_text):
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    def output(sub, default, what):
        sub.add_argument("--output", default=default, help=f"where to write {what} (- for stdout; default: {default})")

    verb("validate", cmd_validate, "check the study file against the schema and its cross-references")
    verb("cells", cmd_cells, "list the study's cells (one id per line)").add_argument(
        "--json", action="store_true", help="one JSON object per cell, with its fields and output path")
    verb("estimate", cmd_estimate, "estimate the study's denoising cost before running it: NFEs from the sampler and "
         "search formulas, GFLOPs from the real architectures (meta device), GPU-hours at a sustained throughput"
         ).add_argument("--tflops", type=float, default=400.0,
                        help="sustained TFLOP/s of one GPU (default 400: ~40%% of an H100's dense bf16 peak)")
    output(verb("schema", cmd_schema, "write the params schema: the base plus every registered plug-in's names and "
                "options (no study needed)"), "src/diffscale/schemas/params.schema.json", "the schema")
    output(verb("dvc-yaml", cmd_dvc_yaml, "write dvc.yaml: the study's nodes as DVC stages"), "dvc.yaml", "dvc.yaml")
    verb("plan", cmd_plan, "write every node's plan for DVC (the `plan` stage of dvc.yaml)")
    verb("verify", cmd_verify, "check every artifact of the study and the cell cache against its sha256 manifest; "
         "exit 1 naming each corrupt file")

    toy = verb("toy", cmd_toy, "build one artifact of the toy world (dataset, prompt sets, trained components)")
    toy.add_argument("artifact", choices=TOY_ARTIFACTS)
    toy.add_argument("--name", help="prompt set name (for `prompts`)")
    verb("prompts", cmd_prompts, "write a real prompt set: fetch it from its pinned source (checksum verified) "
         "or list ImageNet classes").add_argument("--name", required=True, help="prompt set name")
    verb("fetch", cmd_fetch, "fetch an evaluation input of the study (checksum verified)").add_argument(
        "input", choices=("fid-reference", "inception"))
    verb("model", cmd_model, "prepare one model of the zoo: train a toy denoiser, fetch a pinned hub revision "
         "(safetensors only) or record a local folder").add_argument("--name", required=True)
    verb("sample", cmd_sample, "sample one block of cells (one model, sampler and prompt set; every step count "
         "and guidance): images, per-image records and a cost ledger per cell; cells already in the cache are "
         "reused").add_argument("--block", required=True, help="block id (see `diffscale cells --json`)")
    verb("score", cmd_score, "score every cell of a sampled block with every metric, with bootstrap CIs (cached "
         "scores are reused)").add_argument("--block", required=True, help="block id (see `diffscale cells --json`)")
    verb("aggregate", cmd_aggregate, "collect ledgers and scores into the tidy metrics.csv")
    verb("report", cmd_report, "render figures, tables and the report page from metrics.csv")
    return top


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="diffscale %(levelname)s: %(message)s")
    log.setLevel(logging.INFO)
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except ParamsError as error:
        print(f"diffscale: {error}", file=sys.stderr)
        return 2
    except FetchError as error:
        print(f"diffscale: {error}", file=sys.stderr)
        return 3
    except IntegrityError as error:
        print(f"diffscale: corrupt artifact: {error}", file=sys.stderr)
        return 4
    except Exception as error:  # a bug or a broken environment: the traceback, then one line that says so
        traceback.print_exc()
        print(f"diffscale: {args.verb} failed: {type(error).__name__}: {error} (the traceback above says where)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
