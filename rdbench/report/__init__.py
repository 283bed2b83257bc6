"""The HTML report of a results folder: ``render_report(results_dir, out_dir)``. Reads records, never trains:
may import records, bench (tables, sweeps), metrics, config and registry; never the engine, perf or cli."""

from rdbench.report.render import render_report

__all__ = ["render_report"]
