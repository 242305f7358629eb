"""The report page: every figure and table of a study, each with a reading generated from the numbers.

`build_report` reads `metrics.csv` and writes `index.html`, `figures/<prompt set>/*.png` and
`tables/<prompt set>/*.csv`. Each prompt set gets its own part of the page because scores on different
prompt sets are not comparable. The page is `templates/index.html.j2`, filled with the sections of
`report.sections`. The same table gives the same bytes (no timestamps, no PNG stamp).
"""

from __future__ import annotations

from pathlib import Path

import jinja2
import pandas as pd

from diffscale.atomic import atomic_directory, write_text
from diffscale.report.comparisons import Comparisons
from diffscale.report.readings import intro
from diffscale.report.sections import Writer, prompt_set_report
from diffscale.report.tidy import load_metrics

_PAGES = jinja2.Environment(
    loader=jinja2.PackageLoader("diffscale.report", "templates"), autoescape=True, trim_blocks=True,
    lstrip_blocks=True,
)


def build_report(
    metrics_csv: Path,
    out_dir: Path,
    title: str,
    reference_steps: int | None = None,
    reference_model: str | None = None,
    timings_csv: Path | None = None,
    training_csv: Path | None = None,
    comparisons: Comparisons | None = None,
) -> Path:
    """Write the report of one study into `out_dir` (index.html, figures/, tables/) and return the page's path.

    `reference_steps`: the step count of the Table 1 analogue and the paper comparison (default, or when
    not run: the longest schedule of the default sampler). `reference_model`: the model whose GFLOPs per
    NFE is cost 1 in the Table 1 analogue (default: the largest). `training_csv`: each model's training ledger
    (`tidy.training_table`), shown in the training-compute section. `comparisons`: the cells' per-image data,
    for paired differences, the FID/KID floor and ranking checks (without it, cells' own CIs only). `figures/`
    and `tables/` are replaced whole, so no stale file survives; other files in `out_dir` are left alone.
    """
    df = load_metrics(metrics_csv)
    if timings_csv is not None:  # measured seconds per image, kept apart from the results (see report.tidy)
        df = df.merge(pd.read_csv(timings_csv)[["cell", "seconds_per_image"]], on="cell", how="left")
    if training_csv is not None:  # each model's training ledger (its wall seconds too), shown in its section
        ledger = pd.read_csv(training_csv, keep_default_na=False, na_values=[""]).drop(columns="training_flops")
        df = df.merge(ledger, on="model", how="left")
    out_dir = Path(out_dir)
    cells_per_prompt_set = df.groupby("prompt_set")["cell"].nunique().sort_values(ascending=False, kind="mergesort")
    with atomic_directory(out_dir / "figures") as figures_dir, atomic_directory(out_dir / "tables") as tables_dir:
        reports = [
            prompt_set_report(
                df[df["prompt_set"] == name], Writer(figures_dir, tables_dir, name), reference_steps, reference_model,
                comparisons,
            )
            for name in cells_per_prompt_set.index
        ]
    page = out_dir / "index.html"
    template = _PAGES.get_template("index.html.j2")
    write_text(page, template.render(title=title, intro=intro(df), prompt_sets=reports))
    return page
