"""Reliability: a run killed with SIGKILL (training, sampling or scoring) resumes with the same command, leaves
no staging directory behind, and ends with outputs byte-identical to an uninterrupted run; corrupt
artifacts are caught, named and (in the cache) recomputed; DVC and Snakemake on one tree at once leave
it consistent."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

import workflows
from diffscale.cells import Paths, expand
from diffscale.config import load
from workflows import BIN, ENV, run

pytestmark = pytest.mark.engine
BLOCK = "toy-w16__random__toy-captions"  # the block whose forced jobs are killed


def snakemake(work: Path, *extra: str) -> list[str]:
    return workflows.snakemake(work, "study.yaml", *extra)


def kill_when(cmd: list[str], cwd: Path, ready, timeout: float = 600) -> None:
    """Start `cmd` in its own process group and SIGKILL the whole group once `ready()` holds."""
    process = subprocess.Popen(cmd, cwd=cwd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert process.poll() is None, "the run finished before the moment to kill it"
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def outputs(work: Path) -> dict[str, bytes]:
    """Every result a study produces (images, records, ledgers' NFEs, scores, the tables), by relative path."""
    root = work / "results" / "smoke"
    files = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(work).as_posix()
        if path.is_file() and any(part in relative for part in ("/samples/", "/scores/", "/toyworld/", "/models/")):
            if path.name in ("ledger.json", "training-ledger.json", ".snakemake_timestamp", "diffscale-manifest.json",
                             "training.json", ".gitignore"):
                continue  # wall-clock seconds, the manifests that cover them, and DVC's .gitignore files
            files[relative] = path.read_bytes()
    files["metrics.csv"] = (root / "metrics.csv").read_bytes()
    return files


def staging_left(work: Path) -> list[Path]:
    return [p for p in (work / "results").rglob("*.partial-*")] + list((work / "results" / ".cache" / "staging").glob("*"))


@pytest.fixture(scope="module")
def reference(smoke_run):
    return outputs(smoke_run)


def running(work: Path, rule: str) -> bool:
    """A job of this rule has started: its log exists."""
    logs = work / "results" / "smoke" / "logs"
    return any(logs.glob(f"{rule}/*.log")) if logs.exists() else False


def test_a_killed_run_resumes_with_the_same_command_and_the_same_bytes(repo, smoke_run, tmp_path, reference):
    shutil.copy(repo / "config" / "smoke.yaml", tmp_path / "study.yaml")
    command = snakemake(tmp_path)
    # Every trained artifact but the autoencoder, and every cell, come from the cold run's caches: the run trains
    # the autoencoder (killed during it, then resumed); retrained to the same bytes, it leaves every model and cell
    # key unchanged, so the resumed run restores the rest (the kills during sampling and scoring compute, below).
    seeded = workflows.seed_artifacts(smoke_run, tmp_path, lambda name: name != "toy-autoencoder", lambda cell: True)
    assert seeded and "toy-autoencoder" not in seeded
    # During training of the toy world (the autoencoder has started), then resume.
    kill_when(command, tmp_path, lambda: running(tmp_path, "toy_autoencoder"))
    assert (tmp_path / ".snakemake" / "locks").exists() and any((tmp_path / ".snakemake" / "locks").iterdir())
    output = run(command, tmp_path)
    assert "removed the lock of a killed run" in output
    assert outputs(tmp_path) == reference
    # The report too: it shows the autoencoder's training seconds, which the retraining changed.
    assert [e["cell"] for e in workflows.computed(tmp_path)] == ["toy-autoencoder", "report"]
    # During sampling and during scoring of a forced rerun of one block (its outputs are deleted first), then resume.
    params = load(tmp_path / "study.yaml")
    block_scores = Paths.of(params).block_scores(BLOCK)
    for rule in ("sample", "score"):
        shutil.rmtree(tmp_path / "results" / "smoke" / "logs" / rule)
        shutil.rmtree(tmp_path / "results" / ".cache" / "samples")  # so that the forced jobs really compute
        shutil.rmtree(tmp_path / "results" / ".cache" / "scores")
        kill_when(command + ["--forcerun", rule, "--", str(block_scores)], tmp_path, lambda rule=rule: running(tmp_path, rule))
        run(command, tmp_path)
        assert outputs(tmp_path) == reference, f"after a kill during {rule}"
        assert "Nothing to be done" in run(command, tmp_path)
    assert staging_left(tmp_path) == []


def test_corrupt_artifacts_are_named_and_cache_entries_recomputed(smoke_run, tmp_path, reference):
    tmp_path = workflows.copy_run(smoke_run, tmp_path / "work")  # -a keeps the cache's hard links
    diffscale = [BIN / "diffscale", "--params", tmp_path / "study.yaml"]
    assert "all intact" in run(diffscale + ["verify"], tmp_path)

    # One bit of one cached image flips (the block's output is a hard link of it, so it flips too).
    entry = next(e for e in map(json.loads, (tmp_path / "results/.cache/computed.jsonl").read_text().splitlines())
                 if e["kind"] == "samples" and e["cell"].startswith("toy-w8__"))
    png = tmp_path / "results/.cache/samples" / entry["key"][:2] / entry["key"] / "images" / "00003.png"
    flipped = bytearray(png.read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    png.write_bytes(bytes(flipped))
    result = subprocess.run([*map(str, diffscale), "verify"], cwd=tmp_path, env=ENV, capture_output=True, text=True)
    assert result.returncode == 1
    assert f"{png.relative_to(tmp_path)}: sha256" in result.stdout and "but the manifest records" in result.stdout
    # The block's next job finds the entry corrupt and computes that cell again; the tree is whole again.
    block = "toy-w8__nosearch__toy-captions"
    run(diffscale + ["sample", "--block", block], tmp_path)
    log = (tmp_path / "results/.cache/computed.jsonl").read_text().splitlines()
    assert json.loads(log[-1])["cell"] == entry["cell"]
    assert "all intact" in run(diffscale + ["verify"], tmp_path)
    assert outputs(tmp_path) == reference

    # A truncated model: a job that reads it fails with one line naming the file and both hashes.
    weights = next((tmp_path / "results/smoke/models/toy-w8/unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    shutil.rmtree(tmp_path / "results" / ".cache")
    sample = subprocess.run([*map(str, diffscale), "sample", "--block", block], cwd=tmp_path, env=ENV,
                            capture_output=True, text=True)
    assert sample.returncode == 4
    last = sample.stderr.strip().splitlines()[-1]
    assert last.startswith("diffscale: corrupt artifact:") and weights.name in last and "the manifest records" in last
    assert "Traceback" not in sample.stderr


def test_snakemake_and_dvc_at_once_leave_a_consistent_tree(repo, smoke_run, tmp_path, reference):
    """Both engines on one tree at the same time: outputs are written atomically and the cache is shared, so
    whatever the interleaving, a final run of either engine completes and the results are the same bytes. The
    trained artifacts and the cells of every block but two come from the cold run's caches (both engines restore
    them at once); the cells of the two blocks (both toy models' on the captions) are computed, by whichever
    engine gets to each first, as are the tables and the report."""
    shutil.copy(repo / "config" / "smoke.yaml", tmp_path / "study.yaml")
    workflows.init_dvc(tmp_path)
    params = load(tmp_path / "study.yaml")
    raced = {"toy-w8__nosearch__toy-captions", "toy-w16__nosearch__toy-captions"}
    computed_here = {c.id for c in expand(params) if Paths.of(params).block_of(c).id in raced}
    assert len(computed_here) > len(raced)
    workflows.seed_artifacts(smoke_run, tmp_path, cells=lambda cell: cell not in computed_here | raced)
    both = [subprocess.Popen(list(map(str, cmd)), cwd=tmp_path, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL) for cmd in (snakemake(tmp_path), [BIN / "dvc", "repro"])]
    for process in both:
        process.wait(timeout=1800)  # either may fail (one deletes an output the other reads); neither corrupts
    run(snakemake(tmp_path), tmp_path)
    run([BIN / "dvc", "repro"], tmp_path)
    assert outputs(tmp_path) == reference
    assert "all intact" in run([BIN / "diffscale", "--params", tmp_path / "study.yaml", "verify"], tmp_path)
