"""A battery of faulty studies: each is stopped before anything runs by `diffscale validate`, with one message
naming the key and what is allowed (the file and line for YAML errors), and nothing written under results/;
`snakemake -n` stops a representative of each kind the same way, without a traceback. Degenerate settings run,
with a warning."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import yaml

from diffscale import cli
from study_edits import set_key


def _add_grid(**fields):
    def change(study):
        study["grids"].append({"models": ["toy-w16"], "samplers": ["ddim"], "steps": [4], "guidance": [2.0],
                               "prompt_sets": ["toy-captions"]} | fields)
    return change


def _local_model(content: str):
    """A local model entry whose folder is empty, lacks model_index.json, or holds pickled weights."""
    def change(study, folder):
        if content != "missing":
            folder.mkdir()
            if content == "pickled":
                (folder / "model_index.json").write_text("{}")
                (folder / "unet").mkdir()
                (folder / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")
        study["models"]["local"] = {"source": "local", "path": str(folder)}
        study["grids"][0]["models"].append("local")
    return change


# (id, change of the smoke study, fragments the message must contain)
CASES = [
    ("wrong type", set_key("models.toy-w8.width", "eight"), ["models.toy-w8.width", "'eight' is not of type 'integer'"]),
    ("unknown top-level key", set_key("sede", 1), ["unknown key(s) ['sede']", "'seed'"]),
    ("unknown nested key", set_key("sampling.batchsize", 8), ["sampling: unknown key(s) ['batchsize']", "'batch_size'"]),
    ("unknown sampler", set_key("grids.0.samplers", ["ddmi"]), ["grids.0.samplers.0: 'ddmi' is not allowed", "'dpmsolver++'"]),
    ("unknown verifier kind", set_key("verifiers.oracle.kind", "oralce"),
     ["verifiers.oracle.kind: 'oralce' is not allowed", "'clip-score'"]),
    ("unknown search algorithm", set_key("grids.2.search.algorithms", ["beam"]), ["'beam' is not allowed", "'zero-order'"]),
    ("unknown metric", set_key("scoring.metrics", ["fdi"]), ["scoring.metrics.0: 'fdi' is not allowed", "'fid'"]),
    ("grid with an undefined model", set_key("grids.0.models", ["toy-w99"]), ["grids.0.models: 'toy-w99' is not defined", "'toy-w16'"]),
    ("grid with an undefined prompt set", set_key("grids.0.prompt_sets", ["coco"]),
     ["grids.0.prompt_sets: 'coco' is not defined", "'toy-captions'"]),
    ("grid with an undefined verifier", set_key("grids.2.search.verifiers", ["oracel"]),
     ["'oracel' is not defined under `verifiers`", "'oracle'"]),
    ("zero steps", set_key("grids.0.steps", [0, 4]), ["grids.0.steps.0: 0 is less than the minimum of 1"]),
    ("zero budget", set_key("grids.2.search.budgets", [0]), ["grids.2.search.budgets.0: 0 is less than the minimum of 1"]),
    ("negative guidance", set_key("grids.0.guidance", [-2.0]), ["grids.0.guidance.0: -2.0 is less than the minimum of 1"]),
    ("confidence above 1", set_key("scoring.confidence", 1.5), ["scoring.confidence: 1.5 is greater than or equal to the maximum of 1"]),
    ("confidence of 0", set_key("scoring.confidence", 0), ["scoring.confidence: 0 is less than or equal to the minimum of 0"]),
    ("hf revision not a full sha", lambda s: s["models"].update(sd={"source": "hf", "repo": "org/sd", "revision": "main"}),
     ["models.sd.revision: 'main' does not match '^[0-9a-f]{40}$'"]),
    ("local model that does not exist", _local_model("missing"), ["models.local.path:", "does not exist"]),
    ("local model without model_index.json", _local_model("empty"), ["models.local.path:", "no model_index.json"]),
    ("local model with pickled weights", _local_model("pickled"), ["models.local.path:", "only safetensors", ".bin"]),
    ("paths search with a non-resumable sampler", _add_grid(samplers=["dpmsolver++"], search={
        "algorithms": ["paths"], "verifiers": ["oracle"], "budgets": [2]}),
     ["paths search needs a resumable sampler, not 'dpmsolver++'", "'ddim'"]),
    ("FK steering with a deterministic sampler", _add_grid(search={
        "algorithms": ["fk-steering"], "verifiers": ["oracle"], "budgets": [2]}),
     ["fk-steering search needs a stochastic sampler, not 'ddim'", "'ddpm'"]),
    ("an ensemble containing itself", set_key("verifiers.ensemble.members", ["oracle", "ensemble"]),
     ["verifiers.ensemble.members: 'ensemble' is not another defined verifier"]),
    ("an ensemble cycle", lambda s: s["verifiers"].update(a={"kind": "ensemble", "members": ["oracle", "b"]},
                                                          b={"kind": "ensemble", "members": ["clip", "a"]}),
     ["the members form a cycle"]),
    ("aesthetic without its mlp", set_key("verifiers.aesthetic", {"kind": "aesthetic"}),
     ["verifiers.aesthetic: 'mlp' is a required property"]),
    ("an option of another verifier kind", set_key("verifiers.clip.backbone", "toy-clip"),
     ["verifiers.clip: unknown key(s) ['backbone']", "'toy'"]),
    ("paths search that would never finish", set_key("search.paths", {"forward": 3, "backward": 3}),
     ["search.paths.backward: must exceed forward"]),
    ("a whole-trajectory verifier inside paths search", set_key("grids.3.search.verifiers", ["self-consistency"]),
     ["verifier 'self-consistency' compares a whole trajectory's x0 predictions, which paths search never has"]),
    ("device: tpu", set_key("device", "tpu"), ["device: 'tpu' is not allowed; allowed values: ['auto', 'cpu', 'cuda']"]),
    ("threads: 0", set_key("threads", 0), ["threads: 0 is less than the minimum of 1"]),
    ("an undefined reference model", set_key("report.reference_model", "toy-w64"),
     ["report.reference_model: 'toy-w64' is not defined", "'toy-w8'"]),
    ("reference steps no grid runs", set_key("report.reference_steps", 7), ["report.reference_steps: 7 is not a step count of any grid"]),
    ("a fetched prompt set without its input", set_key("prompt_sets.coco", {"kind": "fetched", "size": 5}),
     ["prompt_sets.coco: 'input' is a required property"]),
    ("a metric no prompt set has", lambda s: s["scoring"]["metrics"].append("inception_score"),
     ["'inception_score' applies to prompt sets of kind ['imagenet-classes']"]),
    ("a study name with spaces", set_key("study", "my study"), ["study: 'my study' does not match"]),
    ("no grids", set_key("grids", []), ["grids: [] should be non-empty"]),
    ("sampling jobs neither block nor cell", set_key("sampling.jobs", "node"), ["sampling.jobs: 'node' is not allowed", "'cell'"]),
]

YAML_CASES = [
    ("a YAML syntax error", "study: smoke\nseed: 0\nmodels: {toy-w8: [\n", ["study.yaml:4:1: not valid YAML"]),
    ("a key written twice", None, ["study.yaml:", "key 'toy-w8' is written twice in one mapping"]),
]


@pytest.fixture
def smoke(repo):
    return yaml.safe_load((repo / "config" / "smoke.yaml").read_text())


def write_case(tmp_path, smoke, change) -> None:
    study = copy.deepcopy(smoke)
    if change.__code__.co_argcount == 2:
        change(study, tmp_path / "model")
    else:
        change(study)
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))


# Through the engine, one case of each way the Snakefile can refuse a study: it validates with the very calls
# `diffscale validate` makes (`config.read_study_file`, `config.resolve`), so every case's message is checked
# in-process below, and these show that the workflow stops with it, no traceback and nothing written. (Forty
# Snakemake parses cost ~100 CPU-seconds and checked the same call forty times.)
ENGINE_CASES = ["wrong type", "unknown nested key", "grid with an undefined model", "local model with pickled weights",
                "FK steering with a deterministic sampler", "an ensemble cycle", "reference steps no grid runs"]


def validate_refuses(tmp_path, capsys, fragments) -> None:
    assert cli.main(["--params", str(tmp_path / "study.yaml"), "validate"]) == 2
    message = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "results").exists()


def snakemake_dry_run(repo, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "-s", str(repo / "workflow" / "Snakefile"),
                           "-d", str(tmp_path), "--configfile", str(tmp_path / "study.yaml")], capture_output=True, text=True)


def snakemake_refuses(repo, tmp_path, fragments) -> None:
    result = snakemake_dry_run(repo, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    for fragment in fragments:
        assert fragment in output, output
    assert "Traceback" not in output and 'File "' not in output, output
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_faulty_study_is_stopped_before_anything_runs(case, smoke, tmp_path, capsys):
    _, change, fragments = case
    write_case(tmp_path, smoke, change)
    validate_refuses(tmp_path, capsys, fragments)


@pytest.mark.engine
@pytest.mark.parametrize("case", [c for c in CASES if c[0] in ENGINE_CASES], ids=lambda case: case[0])
def test_snakemake_stops_a_faulty_study_before_any_job(case, smoke, repo, tmp_path):
    _, change, fragments = case
    write_case(tmp_path, smoke, change)
    snakemake_refuses(repo, tmp_path, fragments)


def yaml_case(repo, tmp_path, text) -> None:
    if text is None:  # the smoke study with its first model written twice
        text = (repo / "config" / "smoke.yaml").read_text().replace(
            "  toy-w8: {source: toy, width: 8}\n", "  toy-w8: {source: toy, width: 8}\n  toy-w8: {source: toy, width: 16}\n")
    (tmp_path / "study.yaml").write_text(text)


@pytest.mark.parametrize("case", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_a_faulty_yaml_file_is_named_with_its_line(case, repo, tmp_path, capsys):
    _, text, fragments = case
    yaml_case(repo, tmp_path, text)
    validate_refuses(tmp_path, capsys, fragments)


@pytest.mark.engine
@pytest.mark.parametrize("case", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_snakemake_names_a_faulty_yaml_file(case, repo, tmp_path):
    _, text, fragments = case
    yaml_case(repo, tmp_path, text)
    # Snakemake reads --configfile itself and reports a syntax error without its line; the duplicate key,
    # which its reader would accept, is refused by the workflow with the file and line.
    snakemake_refuses(repo, tmp_path, ["not valid JSON or YAML"] if "syntax" in case[0] else fragments)


@pytest.mark.engine
@pytest.mark.parametrize("edit, warning", [
    (set_key("search.fk-steering.interval", 9), "search.fk-steering.interval: 9 >= 4 steps: particles are never resampled"),
    (set_key("search.paths.start", 1.0), "search.paths.start: 1.0 of 4 steps leaves no step to branch at"),
])
def test_degenerate_settings_run_with_a_warning(edit, warning, smoke, repo, tmp_path, capsys):
    write_case(tmp_path, smoke, edit)
    assert cli.main(["--params", str(tmp_path / "study.yaml"), "validate"]) == 0
    assert warning in capsys.readouterr().err
    result = snakemake_dry_run(repo, tmp_path)
    assert result.returncode == 0 and warning in result.stdout + result.stderr
