"""``rdbench compare --a DIR --b DIR``: is B better than A, and is the difference real? (rdbench.bench.compare)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import fail

Opt = typer.Option


def _pct(v: float | None, sign: bool = False) -> str:
    return "-" if v is None else f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}"


def format_rows(rows: list) -> str:
    """A compact table per cell: metric, A, B, B - A, its 95% interval, DeLong's p, the verdict (percent)."""
    cells: dict[str, list] = {}
    for r in rows:
        cells.setdefault(r.key, []).append(r)
    out = []
    for group in cells.values():
        first = group[0]
        if not first.metric:  # a cell on one side only
            out += [f"{first.cell}: {first.note}", ""]
            continue
        over = next((r.interval for r in group if r.interval), "")
        if over == "test images only":
            over += ", not training randomness"
        out.append(f"{first.cell}  (A: seeds {', '.join(map(str, first.seeds_a)) or '-'}; B: seeds "
                   f"{', '.join(map(str, first.seeds_b)) or '-'}" + (f"; interval over {over})" if over else ")"))
        out.append(f"  {'metric':<15}{'A':>8}{'B':>8}{'B-A':>8}  {'95% CI of B-A':<18}{'DeLong p':>9}  verdict")
        for r in group:
            ci = "" if r.low is None else f"[{_pct(r.low, True)}, {_pct(r.high, True)}]"
            p = "" if r.delong_p is None else f"{r.delong_p:.4f}"
            label = "; interval: test images only" if r.low is not None and not r.seed_variance else ""
            extra = f" (DeLong: {r.delong_note})" if r.delong_note else ""
            out.append(f"  {r.metric:<15}{_pct(r.a):>8}{_pct(r.b):>8}{_pct(r.delta, True):>8}  {ci:<18}{p:>9}  "
                       f"{r.verdict}{label}{extra}")
        out.append("")
    stat = [r for r in rows if r.metric]
    judged = [r for r in stat if r.low is not None and r.seed_variance]
    counts = (sum(r.regression for r in judged), sum(r.significant and not r.regression for r in judged),
              sum(not r.significant for r in judged), sum(r.low is not None and not r.seed_variance for r in stat),
              sum(r.low is None for r in stat))
    out.append("{} significant drop(s), {} significant gain(s), {} not significant, {} inconclusive (one seed on a "
               "side), {} without interval (significant: the 95% interval of B - A, over seeds and test images, "
               "excludes 0)".format(*counts))
    return "\n".join(out)


def compare(
    a: Annotated[Path, Opt("--a", help="results folder A, the reference (records in <a>/runs)")],
    b: Annotated[Path, Opt("--b", help="results folder B, the change (records in <b>/runs)")],
    metric: Annotated[list[str], Opt("--metric", help="only this metric (repeatable; default: every metric "
                                                      "both sides recorded)", show_default=False)] = None,
    as_json: Annotated[bool, Opt("--json", help="print the rows as a JSON list of objects")] = False,
    fail_on_regression: Annotated[bool, Opt("--fail-on-regression", help="exit 1 when a change is a significant "
                                                                         "drop (cells with >= --min-seeds seeds per "
                                                                         "side; others are not judged)")] = False,
    min_seeds: Annotated[int, Opt("--min-seeds", min=1, help="seeds per side --fail-on-regression needs to judge a "
                                                             "cell (1: judge one seed by its test-images-only "
                                                             "interval)")] = 3,
) -> None:
    """Pair the cells of A and B by settings (seeds pooled) and print per metric A, B, B - A, a 95% interval of
    B - A from a bootstrap over seeds and the same test images (one seed on a side: test images only, and the row
    is inconclusive), and DeLong's p for image AUROC. Refuses pairs made from different data or test images, and
    records whose scores sidecar disagrees with them."""
    from rdbench.bench.compare import CompareError, SidecarMismatch, compare_dirs, gate
    from rdbench.cli.results import layout_problem

    for folder in (a, b):
        problem = layout_problem(folder, needs_runs=True)
        if problem:
            fail(problem)
    notes: list[str] = []
    try:
        rows = compare_dirs(a, b, metric or None, notes)
    except (CompareError, SidecarMismatch) as exc:
        fail(f"A {a}, B {b}: {exc}")
    if not rows:
        fail(f"no successful run records in {a / 'runs'} or {b / 'runs'}: nothing to compare")
    typer.echo(json.dumps([r.to_dict() for r in rows], indent=1) if as_json else format_rows(rows))
    for note in notes:
        typer.echo(f"note: {note}", err=as_json)
    if not fail_on_regression:
        return
    drops, cannot = gate(rows, min_seeds)
    for line in cannot:
        typer.echo(line, err=as_json)
    if drops:
        if not as_json:
            how = " over the test images alone (--min-seeds 1)" if any(not r.seed_variance for r in drops) else ""
            typer.secho(f"a significant drop{how}: exit 1 (--fail-on-regression)", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
