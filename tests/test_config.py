"""Bad input gets a clear error that names the key and what is allowed, before anything runs."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from diffscale.config import ParamsError, derive_seed, load, resolve


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config" / "smoke.yaml").read_text())


@pytest.mark.parametrize("study_file", ["params.yaml", "config/smoke.yaml"])
def test_shipped_studies_are_valid(repo, study_file):
    params = load(repo / study_file)
    assert params["grids"] and params["models"]


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


def test_grid_naming_an_undefined_model_lists_the_defined_ones(smoke):
    smoke["grids"][0]["models"].append("toy-w999")
    with pytest.raises(ParamsError, match=r"grids\.0\.models: 'toy-w999' is not defined; defined: \['toy-w16', 'toy-w8'\]"):
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


def test_snakemake_stops_before_any_job_on_bad_params(tmp_path, repo, smoke):
    smoke["grids"][0]["samplers"] = ["ddmi"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(smoke))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(repo / "Snakefile"), "-d", str(tmp_path), "--configfile", str(path), "-n"],
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
        "models": ["toy-w16"], "samplers": ["dpmsolver++"], "steps": [4], "guidance": [2.0], "prompt_sets": ["toy-captions"],
        "search": {"algorithms": ["fk-steering", "paths"], "verifiers": ["orcale", "self-consistency"], "budgets": [2]},
    })
    with pytest.raises(ParamsError) as error:
        resolve(smoke)
    message = str(error.value)
    assert "'orcale' is not defined under `verifiers`" in message and "'oracle'" in message
    assert "fk-steering search needs a stochastic sampler, not 'dpmsolver++'" in message and "ddpm" in message
    assert "paths search needs a resumable sampler" in message and "ddim" in message
    assert "verifier 'self-consistency' compares a whole trajectory" in message


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
