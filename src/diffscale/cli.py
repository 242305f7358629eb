"""`diffscale <verb>`: the one interface that Snakemake rules, DVC stages and people call.

Every verb reads the study file (`--params`, default params.yaml), validates it, and writes exactly the
outputs that `diffscale.cells.Paths` names for it, atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from diffscale import cells as cells_module
from diffscale.config import ParamsError, load

log = logging.getLogger("diffscale")

TOY_ARTIFACTS = ("dataset", "reference", "prompts", "autoencoder", "text-encoder", "oracle", "judge", "clip")


def _study(args) -> tuple[dict, cells_module.Paths]:
    params = load(args.params)
    return params, cells_module.Paths.of(params)


def cmd_validate(args) -> None:
    params, _ = _study(args)
    print(f"{args.params}: study {params['study']!r} is valid: {len(cells_module.expand(params))} cells, "
          f"{len(params['models'])} models, {len(params['prompt_sets'])} prompt sets")


def cmd_cells(args) -> None:
    params, paths = _study(args)
    for cell in cells_module.expand(params):
        print(json.dumps(cell.as_dict() | {"samples": str(paths.samples(cell))}) if args.json else cell.id)


def cmd_toy(args) -> None:
    from diffscale.toyworld import build

    params, paths = _study(args)
    if args.artifact == "prompts":
        if args.name not in params["prompt_sets"]:
            raise ParamsError(f"prompt set {args.name!r} is not defined; defined: {sorted(params['prompt_sets'])}")
        build.build_prompt_set(params, paths, args.name)
        return log.info("wrote %s", paths.prompt_set(args.name))
    builders = {
        "dataset": build.build_dataset, "reference": build.build_reference, "autoencoder": build.build_autoencoder,
        "text-encoder": build.build_text_encoder, "oracle": build.build_oracle, "judge": build.build_judge,
        "clip": build.build_clip,
    }
    builders[args.artifact](params, paths)
    log.info("built toy %s for study %s", args.artifact, params["study"])


def cmd_prompts(args) -> None:
    from diffscale import evaldata, prompts
    from diffscale.config import derive_seed

    params, paths = _study(args)
    spec = params["prompt_sets"].get(args.name)
    if spec is None or spec["kind"].startswith("toy-"):
        raise ParamsError(f"prompt set {args.name!r} is not a real prompt set of this study; real ones: "
                          f"{sorted(n for n, p in params['prompt_sets'].items() if not p['kind'].startswith('toy-'))}")
    seed = derive_seed(params["seed"], "prompts", args.name)
    if spec["kind"] == "imagenet-classes":
        prompts.write(paths.prompt_set(args.name), prompts.imagenet_classes(spec["size"], seed))
    else:
        evaldata.fetch(spec["input"], paths.prompt_set(args.name), size=spec["size"], seed=seed,
                       allow_unverified=spec.get("allow_unverified", False), source=spec.get("source"))
    log.info("wrote %s", paths.prompt_set(args.name))


def cmd_fetch(args) -> None:
    from diffscale import evaldata

    params, paths = _study(args)
    what = args.input.replace("-", "_")
    if what not in params["scoring"]:
        raise ParamsError(f"scoring.{what} is not set in this study; nothing to fetch")
    spec = params["scoring"][what]
    out = evaldata.fetch(spec["input"], paths.evaldata(spec["input"]), size=None, seed=params["seed"],
                         allow_unverified=spec.get("allow_unverified", False), source=spec.get("source"))
    log.info("fetched %s into %s", spec["input"], out)


def cmd_model(args) -> None:
    params, paths = _study(args)
    if args.name not in params["models"]:
        raise ParamsError(f"model {args.name!r} is not defined; defined: {sorted(params['models'])}")
    entry = params["models"][args.name]
    if entry["source"] == "toy":
        from diffscale.toyworld.build import build_denoiser

        build_denoiser(params, paths, args.name)
    else:
        from diffscale.atomic import atomic_directory
        from diffscale.models import prepare_local
        from diffscale.models.hub import fetch_hf

        with atomic_directory(paths.model(args.name)) as out:
            (fetch_hf if entry["source"] == "hf" else prepare_local)(entry, out)
    log.info("model %s ready at %s", args.name, paths.model(args.name))


def cmd_sample(args) -> None:
    from diffscale.sampling.block import sample_block

    params, paths = _study(args)
    block, cells = cells_module.find_block(params, args.block)
    out = sample_block(params, block, cells, paths, progress=not args.quiet)
    log.info("sampled %d cells into %s", len(cells), out)


def cmd_score(args) -> None:
    from diffscale.metrics.score import score_block

    params, paths = _study(args)
    block, cells = cells_module.find_block(params, args.block)
    out = score_block(params, block, cells, paths)
    log.info("scored %d cells into %s", len(cells), out)


def cmd_aggregate(args) -> None:
    from diffscale.atomic import write_text
    from diffscale.report.tidy import tidy_table

    params, paths = _study(args)
    table = tidy_table(params, paths)
    write_text(paths.metrics, table.to_csv(index=False, float_format="%.6g"))
    log.info("wrote %s (%d rows, %d cells)", paths.metrics, len(table), table["cell"].nunique())


def cmd_report(args) -> None:
    from diffscale.report import build_report

    params, paths = _study(args)
    html = build_report(
        paths.metrics, paths.report_dir, title=f"diffscale study: {params['study']}",
        reference_steps=params["report"].get("reference_steps"), reference_model=params["report"].get("reference_model"),
    )
    log.info("wrote %s", html)


def cmd_estimate(args) -> None:
    from diffscale.estimate import summary

    params, _ = _study(args)
    table = summary(params, args.tflops)
    print(table.to_string(float_format=lambda v: f"{v:,.1f}"))
    print(f"\ntotal: {table['gpu_hours'].sum():,.0f} GPU-hours of denoising at {args.tflops:g} sustained TFLOP/s "
          "(text encoder, VAE, verifiers and scoring not included)")


def cmd_dvc_yaml(args) -> None:
    from diffscale.dvc import render_dvc_yaml

    params, _ = _study(args)
    text = render_dvc_yaml(params, args.params)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        log.info("wrote %s for %d cells", args.output, len(cells_module.expand(params)))


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
    top.add_argument("--quiet", action="store_true", help="no progress bars")
    verbs = top.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name, func, help_text):
        sub = verbs.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(func=func)
        return sub

    verb("validate", cmd_validate, "check the study file against the schema and its cross-references")
    verb("cells", cmd_cells, "list the study's cells (one id per line)").add_argument(
        "--json", action="store_true", help="one JSON object per cell, with its fields and output path")
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
         "and guidance): images, per-image records and a cost ledger per cell").add_argument(
        "--block", required=True, help="block id (see `diffscale cells --json`)")
    verb("score", cmd_score, "score every cell of a sampled block with every metric, with bootstrap CIs").add_argument(
        "--block", required=True, help="block id (see `diffscale cells --json`)")
    verb("aggregate", cmd_aggregate, "collect ledgers and scores into the tidy metrics.csv")
    verb("report", cmd_report, "render figures, tables and the report page from metrics.csv")
    verb("estimate", cmd_estimate, "estimate the study's denoising cost before running it: NFEs from the sampler and "
         "search formulas, GFLOPs from the real architectures (meta device), GPU-hours at a sustained throughput"
         ).add_argument("--tflops", type=float, default=400.0,
                        help="sustained TFLOP/s of one GPU (default 400: ~40%% of an H100's dense bf16 peak)")
    verb("dvc-yaml", cmd_dvc_yaml, "write dvc.yaml: the study's cells as DVC stages").add_argument(
        "--output", default="dvc.yaml", help="where to write (- for stdout)")
    return top


def main(argv: list[str] | None = None) -> int:
    from diffscale.models.hub import FetchError

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
