"""Each engine shows the results in its own tools: DVC experiments carry the headline metrics and plots
(`dvc exp show`, `dvc metrics diff`, `dvc plots diff`), and `snakemake --report` packs the report."""

from __future__ import annotations

import json
import re
import sys
import zipfile

import pytest

import workflows
from workflows import BIN, run

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def experiments(dvc_run, tmp_path_factory):
    """The smoke study as a DVC project with a committed baseline (a copy of the shared cold `dvc repro`) and two
    experiments."""
    work = workflows.copy_run(dvc_run, tmp_path_factory.mktemp("experiments") / "work")
    for name, change in (("more-bootstrap", "scoring.bootstrap=30"), ("longer-clip", "toyworld.clip.steps=30")):
        run([BIN / "dvc", "exp", "run", "-n", name, "-S", change], work)
    return work


def test_dvc_exp_show_carries_the_headline_metrics(experiments):
    shown = json.loads(run([BIN / "dvc", "exp", "show", "--json"], experiments))
    rows = {}
    for commit in shown:
        for exp in [commit] + [e for e in commit.get("experiments") or [] for e in e.get("revs", [])]:
            rows[exp.get("name") or exp["rev"]] = exp
    assert {"more-bootstrap", "longer-clip"} <= set(rows)
    metrics = rows["longer-clip"]["data"]["metrics"]["results/smoke/headline.json"]["data"]
    assert set(metrics) == {"toy-captions", "toy-pairs"}
    fid = metrics["toy-captions"]["fid_at_ddim_4_steps"]
    assert set(fid) == {"toy-w8", "toy-w16"} and all(v > 0 for v in fid.values())
    assert set(metrics["toy-captions"]["search_gain_fid"]) == {"random", "zero-order", "paths", "fk-steering"}
    params = rows["longer-clip"]["data"]["params"]["params.yaml"]["data"]
    assert params["toyworld"]["clip"]["steps"] == 30


def changed(diff: dict) -> set[str]:
    """The headline metrics whose value differs in a `dvc metrics diff --all --json`."""
    return {key for key, value in diff.get("results/smoke/headline.json", {}).items() if value["diff"]}


def test_dvc_metrics_and_plots_diff_compare_two_experiments(experiments, tmp_path):
    def diff(old, new):
        return json.loads(run([BIN / "dvc", "metrics", "diff", old, new, "--all", "--json"], experiments))

    # More bootstrap resamples change confidence intervals only, no headline number; a longer-trained toy
    # CLIP changes what it scores (CLIPScore) and the searches it guides.
    assert diff("HEAD", "more-bootstrap")["results/smoke/headline.json"] and changed(diff("HEAD", "more-bootstrap")) == set()
    assert "toy-pairs.clip_score_at_ddim_4_steps.toy-w16" in changed(diff("more-bootstrap", "longer-clip"))
    out = tmp_path / "plots"
    run([BIN / "dvc", "plots", "diff", "more-bootstrap", "longer-clip", "-o", out], experiments)
    html = (out / "index.html").read_text()
    assert "toy-captions: joint frontier" in html and "toy-captions: primary metric vs sampling cost" in html


def test_snakemake_report_packs_the_figures_tables_and_page(smoke_run, tmp_path):
    work = workflows.copy_run(smoke_run, tmp_path / "work")  # the shared run is read by other workers meanwhile
    run([sys.executable, "-m", "snakemake", "-s", workflows.SNAKEFILE, "-d", work,
         "--configfile", work / "study.yaml", "--report", tmp_path / "report.zip"], work)
    with zipfile.ZipFile(tmp_path / "report.zip") as archive:
        names = archive.namelist()
        page = next(name for name in names if name.endswith("/index.html"))  # the study's own report page
        html = archive.read(page).decode()
        table = archive.read(next(name for name in names if name.endswith("/metrics.csv"))).decode()
    assert "report/report.html" in names  # Snakemake's report around them
    figures = re.findall(r'src="(figures/[^"]+\.png)"', html)  # every figure the page shows is packed beside it
    assert figures and all(page.removesuffix("index.html") + figure in names for figure in figures)
    assert table.startswith("cell,study,") and ",fid," in table
