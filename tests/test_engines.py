"""Both engines run the smoke study end to end, agree on the cells, and rerun only what changed.

These tests run Snakemake and DVC for real on the smoke study (a few minutes on a laptop CPU).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from diffscale.cells import Paths, blocks, expand
from diffscale.config import load
from diffscale.dag import nodes
from diffscale.dvc import render_dvc_yaml
from diffscale.search import paths as search_paths

pytestmark = pytest.mark.engine

BIN = str(Path(sys.executable).parent)
ENV = os.environ | {"PATH": BIN + os.pathsep + os.environ.get("PATH", "")}
COMMAND = re.compile(r"diffscale --params \S+ (?:--quiet )?(toy \S+(?: --name \S+)?|model --name \S+|sample --block \S+|score --block \S+|aggregate|report)")
DVC_STAGE = re.compile(r"Running stage '([^']+)'")


def executed_by_snakemake(output: str) -> set[str]:
    """Node names (as DVC names them) of the shell commands Snakemake printed."""
    return {node_name(m.group(1)) for m in COMMAND.finditer(output)}


def node_name(command: str) -> str:
    words = command.split()
    if words[0] == "toy":
        return f"prompts@{words[-1]}" if words[1] == "prompts" else f"toy-{words[1]}"
    if words[0] == "sample" and "+" in words[-1]:  # a search block (`algorithm+verifier` in its id)
        return f"search@{words[-1]}"
    return {"model": "model@", "sample": "sample@", "score": "score@"}.get(words[0], words[0]) + (
        words[-1] if words[0] in ("model", "sample", "score") else "")


def trajectory_steps(cell, params) -> int:
    """Denoiser steps per image slot: the NFE formula of each search algorithm (see diffscale.search)."""
    if cell.search == "none":
        return cell.steps
    if cell.search == "paths":
        options = params["search"]["paths"]
        start, spans = search_paths.rounds(cell.steps, options["start"], options["forward"], options["backward"])
        return cell.budget * start + cell.budget * options["copies"] * sum(end - begin for begin, end in spans)
    return cell.budget * cell.steps


def run(cmd: list[str], cwd: Path) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def change_one_model(study_file: Path) -> None:
    study = yaml.safe_load(study_file.read_text())
    study["models"]["toy-w8"]["training"] = {"steps": study["toyworld"]["denoiser"]["steps"] + 5}
    study_file.write_text(yaml.safe_dump(study, sort_keys=False))


def expected_after_change(params: dict) -> set[str]:
    toy_w8 = [b.id for b in blocks(params) if b.model == "toy-w8"]
    return {"model@toy-w8", "aggregate", "report"} | {f"sample@{b}" for b in toy_w8} | {f"score@{b}" for b in toy_w8}


@pytest.fixture(scope="module")
def smoke_params(repo):
    return load(repo / "config" / "smoke.yaml")


@pytest.fixture(scope="module")
def snakemake_runs(repo, tmp_path_factory):
    work = tmp_path_factory.mktemp("snakemake")
    study = work / "smoke.yaml"
    shutil.copy(repo / "config" / "smoke.yaml", study)
    snakemake = [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(work),
                 "--configfile", str(study), "--cores", "2", "--printshellcmds"]
    cold = run(snakemake, work)
    again = run(snakemake, work)
    change_one_model(study)
    changed = run(snakemake, work)
    return {"work": work, "cold": cold, "again": again, "changed": changed}


@pytest.fixture(scope="module")
def dvc_runs(repo, tmp_path_factory, smoke_params):
    work = tmp_path_factory.mktemp("dvc")
    shutil.copy(repo / "config" / "smoke.yaml", work / "params.yaml")
    run(["git", "init", "-q"], work)
    run([os.path.join(BIN, "dvc"), "init", "-q"], work)
    run([os.path.join(BIN, "diffscale"), "dvc-yaml"], work)
    dvc = [os.path.join(BIN, "dvc"), "repro"]
    cold = run(dvc, work)
    again = run(dvc, work)
    change_one_model(work / "params.yaml")
    changed = run(dvc, work)
    return {"work": work, "cold": cold, "again": again, "changed": changed}


def test_snakemake_runs_every_node_once(snakemake_runs, smoke_params):
    expected = {n.stage for n in nodes(smoke_params, Paths.of(smoke_params))}
    assert executed_by_snakemake(snakemake_runs["cold"]) == expected


def test_dvc_runs_every_node_once(dvc_runs, smoke_params):
    expected = {n.stage for n in nodes(smoke_params, Paths.of(smoke_params))}
    assert set(DVC_STAGE.findall(dvc_runs["cold"])) == expected


def test_engines_produce_the_same_cells(snakemake_runs, dvc_runs, smoke_params):
    cells = {c.id for c in expand(smoke_params)}
    for work in (snakemake_runs["work"], dvc_runs["work"]):
        assert {p.name for p in (work / "results" / "smoke" / "samples").glob("*/*") if p.is_dir()} == cells
        table = pd.read_csv(work / "results" / "smoke" / "metrics.csv")
        assert set(table["cell"]) == cells


def test_second_run_does_nothing(snakemake_runs, dvc_runs):
    assert "Nothing to be done" in snakemake_runs["again"]
    assert executed_by_snakemake(snakemake_runs["again"]) == set()
    assert DVC_STAGE.findall(dvc_runs["again"]) == []


def test_changing_one_model_reruns_only_its_cells(snakemake_runs, dvc_runs, smoke_params):
    expected = expected_after_change(smoke_params)
    assert executed_by_snakemake(snakemake_runs["changed"]) == expected
    assert set(DVC_STAGE.findall(dvc_runs["changed"])) == expected


@pytest.mark.parametrize("engine", ["snakemake", "dvc"])
def test_outputs_are_sane(engine, snakemake_runs, dvc_runs, smoke_params):
    work = (snakemake_runs if engine == "snakemake" else dvc_runs)["work"]
    root = work / "results" / "smoke"
    for cell in expand(smoke_params):
        samples = work / Paths.of(smoke_params).samples(cell)
        records = [json.loads(line) for line in (samples / "records.jsonl").read_text().splitlines()]
        ledger = json.loads((samples / "ledger.json").read_text())
        assert len(records) == ledger["n_images"] == smoke_params["prompt_sets"][cell.prompt_set]["size"]
        assert ledger["nfe_per_image"] == 2 * trajectory_steps(cell, smoke_params)  # CFG: one pair per step
        assert (ledger["verifier_images"] > 0) == (cell.search != "none")
        assert ledger["gflops_per_nfe"] > 0
        pixels = np.stack([np.asarray(Image.open(samples / r["file"])) for r in records])
        assert pixels.shape[1:] == (32, 32, 3)
        assert pixels.std(axis=(1, 2, 3)).min() > 1.0, "a blank image"
    table = pd.read_csv(root / "metrics.csv")
    assert table["value"].map(math.isfinite).all()
    assert (table["ci_low"] <= table["value"] + 1e-9).all() and (table["value"] <= table["ci_high"] + 1e-9).all()
    assert {"fid", "kid", "clip_score", "compositional_accuracy", "oracle_confidence"} <= set(table["metric"])
    html = (work / "reports" / "smoke" / "index.html").read_text()
    assert "<img" in html


def test_search_with_one_candidate_is_the_no_search_cell_and_more_candidates_do_better(snakemake_runs, smoke_params):
    paths = Paths.of(smoke_params)
    work = snakemake_runs["work"]
    searched = {c.budget: c for c in expand(smoke_params) if c.search == "random"}
    plain = replace(searched[1], search="none", verifier="none", budget=0)
    for png in sorted((work / paths.samples(plain) / "images").iterdir()):
        assert png.read_bytes() == (work / paths.samples(searched[1]) / "images" / png.name).read_bytes()

    def verifier_scores(cell):
        records = (work / paths.samples(cell) / "records.jsonl").read_text().splitlines()
        return np.array([json.loads(r)["verifier_scores"][cell.verifier] for r in records])

    one, two = verifier_scores(searched[1]), verifier_scores(searched[2])
    assert (two >= one).all() and (two > one).any()  # nested candidates: the anytime curve only rises


def test_same_params_give_the_same_images(snakemake_runs, dvc_runs, smoke_params):
    """Reproducible: the two engines trained and sampled independently, yet wrote identical PNGs."""
    cell = next(c for c in expand(smoke_params) if c.model == "toy-w16")
    first = snakemake_runs["work"] / Paths.of(smoke_params).samples(cell) / "images"
    second = dvc_runs["work"] / Paths.of(smoke_params).samples(cell) / "images"
    for png in sorted(first.iterdir()):
        assert png.read_bytes() == (second / png.name).read_bytes()


def test_committed_dvc_yaml_is_current(repo):
    expected = render_dvc_yaml(load(repo / "params.yaml"), "params.yaml")
    assert (repo / "dvc.yaml").read_text() == expected, "dvc.yaml is stale: run `diffscale dvc-yaml`"


def test_workflow_lints_clean(repo):
    output = run([sys.executable, "-m", "snakemake", "--lint", "-s", str(repo / "Snakefile"), "-d", str(repo)], repo)
    assert "Congratulations, your workflow is in a good condition!" in output


def test_slurm_profile_dry_run_requests_gpus_only_for_gpu_studies(repo, tmp_path):
    study = yaml.safe_load((repo / "config" / "smoke.yaml").read_text()) | {"device": "auto"}
    (tmp_path / "gpu.yaml").write_text(yaml.safe_dump(study))
    dry = [sys.executable, "-m", "snakemake", "-n", "-s", str(repo / "Snakefile"), "-d", str(tmp_path),
           "--profile", str(repo / "workflow" / "profiles" / "slurm")]
    cpu_plan = run(dry + ["--configfile", str(repo / "config" / "smoke.yaml")], tmp_path)
    gpu_plan = run(dry + ["--configfile", str(tmp_path / "gpu.yaml")], tmp_path)
    assert "gpu=1" not in cpu_plan
    assert re.search(r"rule sample:(?:(?!\nrule )[\s\S])*gpu=1", gpu_plan)
    assert not re.search(r"rule model:(?:(?!\nrule )[\s\S])*gpu=1", gpu_plan)
