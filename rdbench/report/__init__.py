"""The HTML report of a results folder: ``render_report(results_dir, out_dir)``."""

from rdbench.report.render import render_report

__all__ = ["render_report"]
