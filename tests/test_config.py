"""Bad input gets a clear error that names the key and what is allowed, before anything runs."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from diffscale.config import load, resolve
from diffscale.errors import ParamsError
from diffscale.sampling.samplers import SAMPLERS
from diffscale.seeds import derive_seed

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config" / "smoke.yaml").read_text())


@pytest.mark.parametrize("study_file", ["params.yaml", *sorted(f"config/{p.name}" for p in (REPO / "config").glob("*.yaml"))])
def test_shipped_studies_are_valid(repo, study_file):
    params = load(repo / study_file)
    assert params["grids"] and params["models"]


@pytest.mark.parametrize("study_file", ["config/toy-flow.yaml", "config/toy-full.yaml", "config/toy-distilled.yaml"])
def test_toy_studies_share_the_default_toy_world_and_ladder(repo, study_file):
    """They say they reuse the default study's trained world in one results tree: that holds only while their
    recipes and ladder equal params.yaml's (the artifact cache keys each component by what it reads)."""
    default, study = load(repo / "params.yaml"), load(repo / study_file)
    assert study["toyworld"] == default["toyworld"]
    assert {name: study["models"][name] for name in default["models"]} == default["models"]


def test_unknown_key_names_the_key_and_the_allowed_keys(smoke):
    smoke["sampling"]["batchsize"] = 8
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "sampling" in message and "batchsize" in message and "batch_size" in message


def test_unknown_sampler_lists_the_samplers(smoke):
    smoke["grids"][0]["samplers"] = ["ddmi"]
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "grids.0.samplers.0" in message and "'ddmi'" in message and "dpmsolver++" in message


def test_wrong_type_names_the_key(smoke):
    smoke["models"]["toy-w8"]["width"] = "eight"
    with pytest.raises(ParamsError, match=r"models\.toy-w8\.width"):
        resolve(smoke)


def test_training_flops_are_stated_for_real_models_and_counted_for_toy_ones(smoke):
    smoke["models"]["real"] = {"source": "hf", "repo": "org/name", "revision": "0" * 40, "training_flops": 1.2e23}
    assert resolve(smoke)["models"]["real"]["training_flops"] == 1.2e23
    smoke["models"]["real"]["training_flops"] = -1
    with pytest.raises(ParamsError, match=r"models\.real\.training_flops"):
        resolve(smoke)
    del smoke["models"]["real"]
    smoke["models"]["toy-w8"]["training_flops"] = 1e12
    with pytest.raises(ParamsError, match=r"models\.toy-w8\.training_flops: a toy model counts"):
        resolve(smoke)


def test_grid_naming_an_undefined_model_lists_the_defined_ones(smoke):
    smoke["grids"][0]["models"].append("toy-w999")
    defined = r"\['toy-flow-w8', 'toy-w16', 'toy-w8', 'toy-w8-lcm'\]"
    with pytest.raises(ParamsError, match=r"grids\.0\.models: 'toy-w999' is not defined; defined: " + defined):
        resolve(smoke)


def test_defaults_fill_what_the_file_leaves_out(smoke):
    del smoke["scoring"]
    params = resolve(smoke)
    assert params["scoring"]["bootstrap"] == 200
    assert "fid" in params["scoring"]["metrics"]


def test_cli_reports_bad_params_with_exit_code_2(tmp_path, smoke):
    bad = copy.deepcopy(smoke)
    bad["device"] = "tpu"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    result = subprocess.run([sys.executable, "-m", "diffscale.cli", "--params", str(path), "validate"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "device: 'tpu' is not allowed; allowed values: ['auto', 'cpu', 'cuda']" in result.stderr


@pytest.mark.engine
def test_snakemake_stops_before_any_job_on_bad_params(tmp_path, repo, smoke):
    smoke["grids"][0]["samplers"] = ["ddmi"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(smoke))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "workflow" / "Snakefile"), "-d", str(tmp_path),
         "--configfile", str(path), "-n"],
        capture_output=True, text=True,
    )
    assert result.returncode != 0
    assert "ddmi" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("*.npz"))


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "a", 1) == derive_seed(0, "a", 1)
    assert derive_seed(0, "a", 1) != derive_seed(0, "a", 2)
    assert 0 <= derive_seed("x") < 2**63


def test_search_needs_defined_verifiers_and_fitting_samplers(smoke):
    smoke["grids"].append({
        "models": ["toy-w16"], "samplers": ["dpmsolver++", "flow-euler"], "steps": [4], "guidance": [2.0],
        "prompt_sets": ["toy-captions"],
        "search": {"algorithms": ["fk-steering", "paths"], "verifiers": ["orcale", "self-consistency"], "budgets": [2]},
    })
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "'orcale' is not defined under `verifiers`" in message and "'oracle'" in message
    assert "fk-steering search needs a stochastic sampler, not 'dpmsolver++'" in message and "ddpm" in message
    assert "paths search needs a resumable sampler" in message and "ddim" in message
    assert "verifier 'self-consistency' compares a whole trajectory" in message
    # Flow samplers: FK steering takes the stochastic flow sampler, paths both resumable flow Euler ones.
    assert "fk-steering search needs a stochastic sampler, not 'flow-euler';" in message
    assert "'flow-euler-stochastic'" in message
    assert "paths search needs a resumable sampler, not 'flow-euler'" not in message


def test_unknown_search_algorithm_and_verifier_kind_list_the_known_ones(smoke):
    smoke["grids"][-1]["search"]["algorithms"] = ["beam"]
    smoke["verifiers"]["oracle"]["kind"] = "oralce"
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "'beam' is not allowed" in message and "zero-order" in message
    assert "'oralce' is not allowed" in message and "clip-score" in message


def test_ensemble_members_must_be_other_verifiers(smoke):
    smoke["verifiers"]["ensemble"]["members"] = ["oracle", "nope"]
    with pytest.raises(ParamsError, match="verifiers.ensemble.members: 'nope' is not another defined verifier"):
        resolve(smoke)


def test_verifier_options_are_checked_per_kind(smoke):
    smoke["verifiers"]["clip"]["backbone"] = "toy-clip"  # an option of self-consistency, not of clip-score
    smoke["verifiers"]["aesthetic"] = {"kind": "aesthetic"}  # without its required `mlp`
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "verifiers.clip: unknown key(s) ['backbone']; allowed keys: ['batch_size', 'kind', 'model', 'pretrained', 'toy']" in message
    assert "verifiers.aesthetic: 'mlp' is a required property" in message


def test_search_options_are_checked_by_their_algorithm(smoke):
    bad_value = copy.deepcopy(smoke)
    bad_value["search"]["fk-steering"]["potential"] = "sum"
    with pytest.raises(ParamsError, match=r"search.fk-steering.potential: 'sum' is not allowed; allowed values: \['difference', 'max'\]"):
        resolve(bad_value)
    smoke["search"]["paths"] = {"forward": 2, "backward": 2}  # would never finish a round
    with pytest.raises(ParamsError, match="search.paths.backward: must exceed forward"):
        resolve(smoke)


def test_defaults_come_from_the_registries(smoke):
    from diffscale.search import ALGORITHMS

    del smoke["search"]
    del smoke["verifiers"]["self-consistency"]["level"]
    params = resolve(smoke)
    assert params["search"]["paths"] == ALGORITHMS["paths"].defaults
    assert params["verifiers"]["self-consistency"]["level"] == 0.5
    assert params["verifiers"]["oracle"]["batch_size"] == 256


def test_an_ensemble_cycle_is_refused(smoke):
    smoke["verifiers"]["a"] = {"kind": "ensemble", "members": ["oracle", "b"]}
    smoke["verifiers"]["b"] = {"kind": "ensemble", "members": ["clip", "a"]}
    with pytest.raises(ParamsError, match="members form a cycle"):
        resolve(smoke)


def test_a_metric_must_apply_to_a_prompt_set_with_its_inputs(smoke):
    smoke["scoring"]["metrics"].append("inception_score")
    smoke["prompt_sets"]["drawbench"] = {"kind": "fetched", "input": "drawbench", "size": 4}
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "'inception_score' applies to prompt sets of kind ['imagenet-classes']" in message
    assert "scoring.fid_reference: required to score fid on prompt set 'drawbench'" in message
    assert "scoring.clip: required to score clip_score on prompt set 'drawbench'" in message


def test_committed_schema_is_the_registries_schema(repo):
    from diffscale import schema

    committed = (repo / "src" / "diffscale" / "schemas" / "params.schema.json").read_text()
    assert committed == schema.render(), "params.schema.json is stale: run `diffscale schema`"
    assert (repo / "workflow" / "schemas" / "params.schema.json").read_text() == committed


HEAVY = ("torch", "diffusers", "transformers", "pandas", "numpy", "open_clip", "torch_fidelity", "matplotlib")


def heavy_modules_loaded(code: str, cwd: Path) -> list[str]:
    """The heavy libraries that running `code` in a fresh interpreter leaves imported."""
    code += f"\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.parametrize("study_file", ["params.yaml", "config/ldm-scaling.yaml", "config/search-scaling.yaml"])
def test_building_the_dag_imports_no_heavy_library(repo, study_file):
    """Snakemake parses the workflow on every invocation: validating a study, building its DAG and its plans
    must not load torch, diffusers or pandas (seconds each); only jobs do."""
    code = (
        "from diffscale.config import load\n"
        "from diffscale.cells import Paths\n"
        "from diffscale import dag, dvc, estimate\n"
        f"params = load({str(repo / study_file)!r})\n"
        "[dag.Plan.of(node, params).digest for node in dag.nodes(params, Paths.of(params))]\n"
    )
    assert heavy_modules_loaded(code, repo) == []


@pytest.mark.parametrize("module", ["diffscale.cli", "diffscale.sampling.block", "diffscale.metrics.score",
                                    "diffscale.report.tidy", "diffscale.toyworld.build"])
def test_a_job_that_finds_its_work_done_imports_no_heavy_library(repo, module):
    """A sampling or scoring job whose cells are all cached, an artifact restored from the cache, the aggregate
    job: each engine test reruns dozens of them, so their modules import torch, diffusers, open_clip or
    torch-fidelity on first use (seconds per job), and numpy or pandas at most."""
    loaded = heavy_modules_loaded(f"import {module}", repo)
    assert set(loaded) <= {"numpy", "pandas"}, f"importing {module} loads {loaded}: import them where they are used"


@pytest.mark.parametrize("objective, sampler, kind", [("rectified-flow", "ddim", "flow"), (None, "flow-euler", "diffusion")])
def test_a_sampler_of_the_other_model_kind_is_refused_before_any_job(smoke, objective, sampler, kind):
    raw = smoke
    raw["models"]["toy-w8"] |= {"objective": objective} if objective else {}
    raw["grids"] = [{"models": ["toy-w8"], "samplers": [sampler], "steps": [2], "guidance": [2.0],
                     "prompt_sets": ["toy-captions"]}]
    with pytest.raises(ParamsError) as error:
        resolve(raw)
    assert f"grids.0.samplers: {sampler!r}" in str(error.value) and f"'toy-w8' is a {kind} model" in str(error.value)
    fits = [name for name, s in SAMPLERS.items() if s.serves == kind and not s.consistency]
    assert str(fits) in str(error.value)


def test_a_key_given_twice_in_the_hand_written_schema_is_refused():
    """json.loads keeps the last of two equal keys silently: a merge once left two `distilled_from` entries."""
    import json

    from diffscale.schema import _unique_keys

    with pytest.raises(ValueError, match="distilled_from"):
        json.loads('{"a": {"distilled_from": 1, "b": 2, "distilled_from": 3}}', object_pairs_hook=_unique_keys)
    assert json.loads('{"a": {"b": 1}, "c": {"b": 2}}', object_pairs_hook=_unique_keys) == {"a": {"b": 1}, "c": {"b": 2}}


def test_committed_headline_is_the_default_studys(repo):
    """main's metrics in `dvc exp show` are the committed results/default/headline.json (README, "What the
    default study shows"): they must be of params.yaml's study, its prompt sets and models, and its plot tables
    those dvc.yaml draws. A changed ladder or prompt set needs a new cold run's files committed."""
    import json

    params = load(repo / "params.yaml")
    headline = json.loads((repo / "results" / params["study"] / "headline.json").read_text())
    assert set(headline) == set(params["prompt_sets"])
    for name, numbers in headline.items():
        primary = next(key for key in numbers if key.startswith("caption_probability_at_"))
        assert set(numbers[primary]) == set(params["models"]), f"{name}: the headline's models are not the study's"
    drawn = yaml.safe_load((repo / "dvc.yaml").read_text())["plots"]
    assert all((repo / next(iter(plot))).is_file() for plot in drawn)


def test_committed_dvc_yaml_is_current(repo):
    from diffscale.dvc import render_dvc_yaml

    expected = render_dvc_yaml(load(repo / "params.yaml"), "params.yaml")
    assert (repo / "dvc.yaml").read_text() == expected, "dvc.yaml is stale: run `diffscale dvc-yaml`"
