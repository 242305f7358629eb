"""Reporting: the tidy table, its analysis (guidance selection, budgets, frontier), figures and the page."""

from diffscale.report.html import build_report

__all__ = ["build_report"]
