"""The paper-scale studies plan correctly under both engines, and their cost estimates follow the formulas."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffscale.cells import Paths, blocks, expand
from diffscale.config import load
from diffscale.dag import nodes
from diffscale.estimate import real_model_gflops, study_cost

BIN = Path(sys.executable).parent
ENV = os.environ | {"PATH": str(BIN) + os.pathsep + os.environ.get("PATH", "")}
CONFIGS = ["config/ldm-scaling.yaml", "config/search-scaling.yaml", "config/flow-scaling.yaml",
           "config/distilled-scaling.yaml"]


def run(cmd, cwd) -> str:
    result = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout + result.stderr


@pytest.mark.engine
@pytest.mark.parametrize("config", CONFIGS)
def test_snakemake_plans_every_node_with_gpus_for_sampling(repo, tmp_path, config):
    plan = run([sys.executable, "-m", "snakemake", "-n", "-s", repo / "workflow" / "Snakefile", "-d", tmp_path,
                "--profile", repo / "workflow" / "profiles" / "slurm", "--configfile", repo / config], tmp_path)
    params = load(repo / config)
    study_nodes = nodes(params, Paths.of(params))
    assert sum(n.args[0] == "sample" for n in study_nodes) == len(expand(params))  # sampling.jobs: cell
    stats = dict(re.findall(r"^(\S+)\s+(\d+)$", plan, flags=re.MULTILINE))  # the job stats table
    assert int(stats["sample"]) == len(expand(params))  # every sampling family is a `sample` job
    # Fetching (models from the hub, evaluation inputs) is a local rule: it runs beside Snakemake, where the network
    # is, not on a compute node (a dry run prints local rules as `rule`; test_slurm sees them run locally). Every
    # model of these studies is a hub model: none is trained.
    for rule in ("fetch_model", "prompts", "fetch_inception"):
        assert f"rule {rule}:" in plan
    assert "\nrule model:" not in plan
    fetching = [n for n in study_nodes if n.rule_name.startswith("fetch")]
    assert len(fetching) >= len(params["models"]) and all(n.local for n in fetching)
    assert "gpu=1" in plan
    # Sampling jobs ask for the runtime their FLOPs need (estimate x 2 + 10 minutes), not a flat default.
    runtimes = {int(m) for m in re.findall(r"rule sample:(?:(?!\nrule )[\s\S])*?runtime=(\d+)", plan)}
    assert len(runtimes) > 1 and min(runtimes) >= 10


@pytest.mark.engine
@pytest.mark.parametrize("config", CONFIGS)
def test_dvc_plans_the_same_stages(repo, tmp_path, config):
    shutil.copy(repo / config, tmp_path / "params.yaml")
    run(["git", "init", "-q"], tmp_path)
    run([BIN / "dvc", "init", "-q"], tmp_path)
    run([BIN / "diffscale", "dvc-yaml"], tmp_path)
    # `dvc repro --dry` stops at the first stage whose inputs do not exist yet (the models to fetch);
    # `dvc status` checks the same pipeline and parameters and lists every stage that would run.
    pending = json.loads(run([BIN / "dvc", "status", "--json"], tmp_path))
    params = load(repo / config)
    assert set(pending) == {"plan"} | {n.name for n in nodes(params, Paths.of(params))}
    run([BIN / "dvc", "dag", "--dot"], tmp_path)  # a valid graph: no cycles, no output written by two stages


def test_search_cost_follows_each_algorithms_formula(repo):
    params = load(repo / "config" / "search-scaling.yaml")
    cost = study_cost(params, {"sd-v1-5": 1.0}).set_index("cell")
    for cell in expand(params):
        if cell.model != "sd-v1-5":
            continue
        nfe = cost.loc[cell.id, "nfe_per_image"]
        if cell.search in ("none", "random", "zero-order", "fk-steering"):
            assert nfe == 2 * cell.steps * max(cell.budget, 1)
        else:  # paths, by hand: 30 steps, s0 = 15, rounds of 2 back and 4 forward, 2 copies; the rounds span
            # 13-17, 15-19, ..., 25-29 (7 x 4 steps) and 27-30 (3 steps): 31 steps per copy after s0.
            assert cell.steps == 30 and params["search"]["paths"] == {"copies": 2, "start": 0.5, "forward": 2, "backward": 4}
            assert nfe == 2 * cell.budget * (15 + 2 * 31)
        assert cost.loc[cell.id, "pflops"] == pytest.approx(nfe * 200 / 1e6)  # DrawBench: 200 prompts x 1 GFLOP


def test_one_job_per_cell_keeps_cells_apart(repo):
    params = load(repo / "config" / "ldm-scaling.yaml")
    grouped = blocks(params)
    assert all(len(cells) == 1 for cells in grouped.values())
    paths = Paths.of(params)
    assert len({paths.samples(c) for c in expand(params)}) == len(expand(params))


@pytest.mark.parametrize("config", CONFIGS)
def test_every_distilled_model_names_a_teacher_of_its_study(repo, config):
    models = load(repo / config)["models"]
    for name, entry in models.items():
        if "distilled_from" in entry:
            assert entry["distilled_from"] in models.keys() - {name}, name


def test_distilled_students_cost_one_evaluation_per_step_at_their_teachers_gflops(repo):
    """SD-Turbo and SDXL-Turbo run without CFG (guidance 1), LCM-Dreamshaper with its guidance embedded: NFEs =
    steps, their teachers' guided cells 2 x steps;
    SD-Turbo has SD 2.1-base's UNet at the same 512 px, SDXL-Turbo SDXL's at 512 px instead of 1024 (fewer GFLOPs)."""
    params = load(repo / "config" / "distilled-scaling.yaml")
    gflops = real_model_gflops(params)
    assert set(gflops) == set(params["models"])  # every model costed: the estimate has no unknown GPU-hours
    assert gflops["sd-turbo"] == gflops["sd-2-1-base"]
    assert gflops["sdxl-turbo"] < gflops["sdxl-base"] / 3  # a quarter of the latent tokens, attention more so
    students = {name: entry["distilled_from"] for name, entry in params["models"].items() if "distilled_from" in entry}
    assert students == {"sd-turbo": "sd-2-1-base", "sdxl-turbo": "sdxl-base", "lcm-dreamshaper-7": "dreamshaper-7"}
    assert gflops["lcm-dreamshaper-7"] == gflops["dreamshaper-7"]  # SD1.5's UNet (the guidance MLP: under 0.01%)
    cost = study_cost(params, gflops).set_index("cell")
    for cell in expand(params):
        expected = cell.steps if cell.model in students else 2 * cell.steps
        assert cost.loc[cell.id, "nfe_per_image"] == expected, cell.id
    assert load(repo / "config" / "flow-scaling.yaml")["models"]["flux-1-schnell"]["distilled_from"] == "flux-1-dev"
