"""A DVC project made from a clone of the repository: a study whose blocks no longer match its dvc.yaml stops in
DVC's first stage, with one line that names the command to run. (The experiments' metrics and plots in such a
clone are tested in test_engines, on the experiments of its edits.)"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

import workflows
from workflows import BIN, ENV, run

pytestmark = pytest.mark.engine

ADDS_A_BLOCK = "grids.1.models=[toy-w16,toy-w8]"  # toy-w8 on the two-object prompts: a new block
TOLD = "run `diffscale --params params.yaml dvc-yaml`, then the DVC command again"


def dvc(work, *args: str) -> tuple[int, str]:
    result = subprocess.run([str(BIN / "dvc"), *args], cwd=work, env=ENV, capture_output=True, text=True)
    return result.returncode, result.stdout + result.stderr


def stopped_at_plan(work, code: int, output: str) -> None:
    assert code != 0
    assert re.findall(r"Running stage '([^']+)'", output) == ["plan"]  # no stage after the check ran
    message = next(line for line in output.splitlines() if line.startswith("diffscale: dvc.yaml does not match"))
    assert "the study adds 2 node(s), e.g. sample@toy-w8__nosearch__toy-pairs" in message and TOLD in message
    assert "Traceback" not in output
    assert not [path for path in (work / "results" / "smoke").rglob("*") if path.is_file()]  # not even a plan


def test_a_study_that_adds_a_block_stops_dvc_before_any_stage(tmp_path):
    workflows.init_dvc(tmp_path)
    workflows.commit_baseline(tmp_path)

    # An experiment (DVC's list syntax: grids.1.models) ...
    stopped_at_plan(tmp_path, *dvc(tmp_path, "exp", "run", "-S", ADDS_A_BLOCK))

    # ... and `dvc repro` after the same edit by hand.
    study = yaml.safe_load((tmp_path / "params.yaml").read_text())
    study["grids"][1]["models"] = ["toy-w16", "toy-w8"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    stopped_at_plan(tmp_path, *dvc(tmp_path, "repro"))

    # Done as told, the plan stage runs and the new block has its stages.
    run([BIN / "diffscale", "--params", "params.yaml", "dvc-yaml"], tmp_path)
    run([BIN / "diffscale", "--params", "params.yaml", "--quiet", "plan"], tmp_path)
    assert "toy-w8__nosearch__toy-pairs" in (tmp_path / "dvc.yaml").read_text()
