"""The report: the numbers, figures and readings of a study's tidy metrics table, on one HTML page.

One job per module: `tidy` (metrics.csv), `metrics` (direction, name and order of each metric), `text`
(words and numbers in sentences), `style` (the shared look of figures), `analysis`, `figures` and
`readings` (model size vs steps, and the joint frontier, after Mei et al.), `search_analysis`,
`search_figures` and `search_readings` (search over initial noises, after Ma et al.), `paper` (Mei et al.'s
Table 1), `sections` (the page's parts per prompt set) and `page` (`build_report` and the HTML template,
`templates/index.html.j2`).
"""


__all__ = ["build_report"]


def __getattr__(name: str):
    """`build_report` on first use: the aggregate job reads `report.tidy` only, and should not pay for importing
    matplotlib, seaborn and the paired comparisons (torch, torch-fidelity) that the page's modules need."""
    if name == "build_report":
        from diffscale.report.page import build_report

        return build_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
