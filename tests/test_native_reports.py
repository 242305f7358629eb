"""Each engine shows the results in its own tools: DVC experiments carry the headline metrics and plots
(`dvc exp show`, `dvc metrics diff`, `dvc plots diff`), and `snakemake --report` packs the report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

BIN = Path(sys.executable).parent
ENV = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def run(cmd, cwd) -> str:
    result = subprocess.run(list(map(str, cmd)), cwd=cwd, env=ENV, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout[-3000:]}\n{result.stderr[-4000:]}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def experiments(repo, tmp_path_factory):
    """The smoke study as a DVC project with a committed baseline and two experiments."""
    work = tmp_path_factory.mktemp("experiments")
    shutil.copy(repo / "config" / "smoke.yaml", work / "params.yaml")
    run(["git", "init", "-q"], work)
    run(["git", "config", "user.email", "ci@example.com"], work)
    run(["git", "config", "user.name", "ci"], work)
    run([BIN / "dvc", "init", "-q"], work)
    run([BIN / "diffscale", "dvc-yaml"], work)
    run([BIN / "dvc", "repro"], work)
    run(["git", "add", "-A"], work)
    run(["git", "commit", "-qm", "baseline"], work)
    for name, change in (("more-bootstrap", "scoring.bootstrap=30"), ("softer-fk", "search.fk-steering.lambda=5.0")):
        run([BIN / "dvc", "exp", "run", "-n", name, "-S", change], work)
    return work


def test_dvc_exp_show_carries_the_headline_metrics(experiments):
    shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], experiments))
    rows = {}
    for commit in shown:
        for exp in [commit] + [e for e in commit.get("experiments") or [] for e in e.get("revs", [])]:
            rows[exp.get("name") or exp["rev"]] = exp
    assert {"more-bootstrap", "softer-fk"} <= set(rows)
    metrics = rows["softer-fk"]["data"]["metrics"]["results/smoke/headline.json"]["data"]
    assert set(metrics) == {"toy-captions", "toy-pairs"}
    fid = metrics["toy-captions"]["fid_at_ddim_4_steps"]
    assert set(fid) == {"toy-w8", "toy-w16"} and all(v > 0 for v in fid.values())
    assert set(metrics["toy-captions"]["search_gain_fid"]) == {"random", "zero-order", "paths", "fk-steering"}
    params = rows["softer-fk"]["data"]["params"]["params.yaml"]["data"]
    assert params["search"]["fk-steering"]["lambda"] == 5.0


def test_dvc_metrics_and_plots_diff_compare_two_experiments(experiments, tmp_path):
    diff = json.loads(run([BIN / "dvc", "metrics", "diff", "more-bootstrap", "softer-fk", "--json"], experiments))
    assert "results/smoke/headline.json" in diff
    out = tmp_path / "plots"
    run([BIN / "dvc", "plots", "diff", "more-bootstrap", "softer-fk", "-o", out], experiments)
    html = (out / "index.html").read_text()
    assert "toy-captions: joint frontier" in html and "toy-captions: primary metric vs sampling cost" in html


def test_snakemake_report_packs_the_figures_tables_and_page(repo, tmp_path):
    shutil.copy(repo / "config" / "smoke.yaml", tmp_path / "study.yaml")
    snakemake = [sys.executable, "-m", "snakemake", "-s", repo / "workflow" / "Snakefile", "-d", tmp_path,
                 "--configfile", tmp_path / "study.yaml"]
    run(snakemake + ["--cores", "2"], tmp_path)
    run(snakemake + ["--report", tmp_path / "report.zip"], tmp_path)
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
    assert any(name.endswith("report.html") for name in names)
    assert any(name.endswith("metrics.csv") for name in names)
    assert any(name.endswith("index.html") and "reports/smoke" in name for name in names)
    assert any(name.endswith(".png") for name in names)
