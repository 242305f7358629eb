"""Snakemake shows the results in its own tool: `snakemake --report` packs the report. (DVC's, `dvc exp show`,
`dvc metrics diff` and `dvc plots diff`, are tested in test_engines on the experiments of its edits.)"""

from __future__ import annotations

import re
import sys
import zipfile

import pytest

import workflows
from workflows import run

pytestmark = pytest.mark.engine


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
