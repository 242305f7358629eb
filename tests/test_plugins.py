"""A plug-in of each kind, registered from this test module alone, runs through validation, a smoke cell,
scoring and the report: the recipes of CONTRIBUTING.md, proven without touching any other file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from diffscale import cli
from diffscale.cells import Cell, Paths
from diffscale.config import load, resolve
from diffscale.errors import ParamsError
from diffscale.estimate import nfe_per_image
from diffscale.metrics import METRICS, Metric, register_metric
from diffscale.sampling.samplers import SAMPLERS, Sampler, register_sampler
from diffscale.search import ALGORITHMS, Algorithm, register_algorithm
from diffscale.search.base import SearchResult, seeded_candidates, trajectories, verify
from diffscale.verifiers import VERIFIERS, Verifier, register
from diffscale.verifiers.base import BATCH_SIZE_OPTION

# -- the plug-ins -------------------------------------------------------------------------------------


class Brightness(Verifier):
    """How close an image's mean brightness is to a target (a stand-in for any learned verifier)."""

    options = {**BATCH_SIZE_OPTION, "target": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5,
                                                "description": "The brightness it likes best."}}

    def __init__(self, *, resources, device="cpu", target: float = 0.5, batch_size: int = 256):
        super().__init__(device=device, batch_size=batch_size)
        self.target = target

    def _forward(self, images, prompts, intermediate):
        return -(images.mean((1, 2, 3)) - self.target).abs()


def worst_of_n(problem, budget: int, options: dict):
    """The verifier's least favourite of N candidates: a control that shows the verifier matters."""
    noise, generators, slots, _ = seeded_candidates(problem, budget)
    latents, intermediate = trajectories(problem, noise, generators, slots)
    scores = verify(problem, latents, slots, intermediate).view(-1, budget)
    pick = scores.argmin(1) if options["pick"] == "worst" else scores.argsort(1)[:, budget // 2]
    rows = pick + budget * torch.arange(len(problem.seeds))
    return SearchResult(latents[rows], scores.flatten()[rows], pick.tolist(),
                        [{"candidate_scores": row.tolist()} for row in scores])


def mean_brightness(cell) -> dict:
    return cell.mean_with_ci(cell.pixels.mean(axis=(1, 2, 3)) / 255.0) | {"details": {"unit": "fraction of white"}}


@pytest.fixture(scope="module")
def plugins():
    register_sampler(Sampler("ddim-linspace", "DDIMScheduler", "DDIM on linspace timesteps",
                             {"timestep_spacing": "linspace"}, resumable=True))
    register("brightness")(Brightness)
    register_algorithm(Algorithm("worst-of-n", worst_of_n, "the verifier's least favourite of N candidates",
                                 trajectories=lambda steps, budget, options: float(budget),
                                 options={"pick": {"type": "string", "enum": ["worst", "median"], "default": "worst"}}))
    register_metric(Metric("brightness", "mean brightness", True, mean_brightness, {"toy-captions": ()}))
    yield
    for registry, name in ((SAMPLERS, "ddim-linspace"), (VERIFIERS, "brightness"), (ALGORITHMS, "worst-of-n"),
                           (METRICS, "brightness")):
        registry.unregister(name)


# -- a study that uses them ------------------------------------------------------------------------------


def plugin_study(repo) -> dict:
    study = yaml.safe_load((repo / "config" / "smoke.yaml").read_text())
    study["models"] = {"toy-w16": study["models"]["toy-w16"]}
    study["prompt_sets"] = {"toy-captions": study["prompt_sets"]["toy-captions"]}
    study["verifiers"] = {"bright": {"kind": "brightness", "target": 0.7}}
    study["search"] = {"worst-of-n": {"pick": "worst"}}
    study["scoring"]["metrics"] = ["fid", "brightness"]
    study["report"] = {}
    study["grids"] = [{"models": ["toy-w16"], "samplers": ["ddim-linspace"], "steps": [3], "guidance": [3.0],
                       "prompt_sets": ["toy-captions"],
                       "search": {"algorithms": ["worst-of-n"], "verifiers": ["bright"], "budgets": [3]}}]
    return study


def test_registered_plugins_are_validated_by_their_own_schemas(plugins, repo):
    study = plugin_study(repo)
    params = resolve(study)
    assert params["verifiers"]["bright"]["batch_size"] == 256 and params["search"]["worst-of-n"] == {"pick": "worst"}
    bad = plugin_study(repo)
    bad["verifiers"]["bright"]["target"] = 2.0
    bad["search"]["worst-of-n"]["pick"] = "best"
    bad["grids"][0]["samplers"] = ["ddim-cosine"]
    with pytest.raises(ParamsError) as error:
        resolve(bad)
    message = str(error.value)
    assert "verifiers.bright.target: 2.0 is greater than the maximum of 1" in message
    assert "search.worst-of-n.pick: 'best' is not allowed; allowed values: ['worst', 'median']" in message
    assert "'ddim-cosine' is not allowed" in message and "ddim-linspace" in message


def test_a_plugin_cell_runs_through_sampling_scoring_and_the_report(plugins, repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(plugin_study(repo)))

    def verb(*args):
        assert cli.main(["--quiet", "--params", "study.yaml", *args]) == 0, args

    for artifact in ("dataset", "reference", "autoencoder", "text-encoder", "oracle", "judge", "clip"):
        verb("toy", artifact)
    verb("toy", "prompts", "--name", "toy-captions")
    verb("model", "--name", "toy-w16")
    params = load("study.yaml")
    paths = Paths.of(params)
    cells = [Cell("toy-w16", "ddim-linspace", 3, 3.0, "toy-captions"),
             Cell("toy-w16", "ddim-linspace", 3, 3.0, "toy-captions", "worst-of-n", "bright", 3)]
    for cell in cells:
        verb("sample", "--block", paths.block_of(cell).id)
        verb("score", "--block", paths.block_of(cell).id)
    verb("aggregate")
    verb("report")

    searched = cells[1]
    ledger = json.loads((paths.samples(searched) / "ledger.json").read_text())
    assert ledger["nfe_per_image"] == nfe_per_image(params, searched) == 3 * 2 * 3  # 3 candidates, CFG pairs
    records = [json.loads(line) for line in (paths.samples(searched) / "records.jsonl").read_text().splitlines()]
    for record in records:  # the worst candidate by the verifier was kept
        assert record["candidate"] == int(np.argmin(record["search"]["candidate_scores"]))
    table = pd.read_csv(paths.metrics)
    brightness = table[table["metric"] == "brightness"].set_index("search")["value"]
    assert set(brightness.index) == {"none", "worst-of-n"} and brightness.between(0, 1).all()
    html = (paths.report_dir / "index.html").read_text()
    assert "mean brightness" in html
