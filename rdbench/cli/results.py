"""Commands that read folders of records: ``report``, ``baseline save``, ``baseline check`` (alias ``check``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import Results, default_report_dir, fail, render

Opt = typer.Option


def report(
    results: Results = Path("results"),
    out: Annotated[Path, Opt(help="folder for index.html and tables/ (default: <results>/report)",
                             show_default=False)] = None,
    title: Annotated[str, Opt(help="page title (default: the results folder's name)", show_default=False)] = None,
) -> None:
    """Render the HTML report: paper tables vs ours, Fig. 5-7 style figures, runs, provenance (one file)."""
    if not results.is_dir():
        fail(f"no results folder at {results}")
    typer.echo(f"report: {render(results, out or default_report_dir(results), title)}")


def baseline_save(
    results: Annotated[Path, Opt(help="results folder whose records form the baseline")],
    out: Annotated[Path, Opt(help="baseline JSON to write (commit it next to the code)")],
    floor: Annotated[float, Opt(help="absolute tolerance floor stored in the baseline (0.01 = 1 point)")] = 0.01,
) -> None:
    """Store per cell (settings without seed) and metric the mean and spread over seeds."""
    from rdbench.bench.baseline import save_baseline

    try:
        b = save_baseline(results, out, floor=floor)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    typer.echo(f"baseline of {len(b['cells'])} cells written to {out}")


def baseline_check(
    baseline: Annotated[Path, Opt(help="baseline JSON (rdbench baseline save)")],
    results: Annotated[Path, Opt(help="results folder with the fresh records")],
    tolerance: Annotated[float, Opt(help="absolute tolerance for every metric (default: max(floor, 3 x the "
                                         "baseline's seed std))", show_default=False)] = None,
    floor: Annotated[float, Opt(help="override the baseline's absolute floor", show_default=False)] = None,
    verbose: Annotated[bool, Opt(help="list every metric, not only the problems")] = False,
) -> None:
    """Compare fresh records with a baseline; exit 1 on a regression beyond the tolerance or a missing cell."""
    from rdbench.bench.baseline import check, format_rows

    try:
        rows = check(baseline, results, tolerance=tolerance, floor=floor)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    bad = [r for r in rows if r.status in ("REGRESSION", "MISSING")]
    typer.echo(format_rows(rows, only_problems=not verbose and bool(bad)))
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "improved", "REGRESSION", "MISSING")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    if bad:
        raise typer.Exit(1)
