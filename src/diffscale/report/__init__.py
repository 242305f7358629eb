"""The report: analysis of the tidy metrics table, seaborn figures and the HTML page."""

from diffscale.report.page import build_report

__all__ = ["build_report"]
