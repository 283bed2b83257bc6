"""Commands that read folders of records: ``report``, ``runs``, ``baseline save``, ``baseline check`` (alias
``check``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import Results, choice, default_report_dir, fail, render
from rdbench.records.schema import STATUSES

Opt = typer.Option
LAYOUT = "<results>/runs/*.json (run records, as run, reproduce and demo write them), optionally sweeps/ and profiles/"


def _holds_records(folder: Path) -> bool:
    """Whether a JSON file directly in ``folder`` is a run record (one is enough to tell)."""
    import json

    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and "config" in data and "status" in data:
            return True
    return False


def layout_problem(results: Path, needs_runs: bool = False) -> str | None:
    """What is wrong with ``results`` as a results folder, or None. A runs/ folder passed as the results folder
    is said so (its parent is meant); ``needs_runs``: sweeps/ or profiles/ alone are not enough."""
    if not results.is_dir():
        return f"no results folder at {results}"
    if (results / "runs").is_dir():
        return None
    if _holds_records(results):
        return (f"{results} holds run records itself: this looks like a runs/ folder; pass its parent "
                f"(--results {results.parent})")
    if not needs_runs and ((results / "sweeps").is_dir() or (results / "profiles").is_dir()):
        return None
    return f"no run records in {results}: expected {LAYOUT}"


def report(
    results: Results = Path("results"),
    out: Annotated[Path, Opt(help="folder for index.html and tables/ (default: <results>/report)",
                             show_default=False)] = None,
    title: Annotated[str, Opt(help="page title (default: the results folder's name)", show_default=False)] = None,
    compare_to: Annotated[Path, Opt(help="results folder A: the page gets a section comparing these results (B) "
                                         "with A, as rdbench compare --a A --b B", show_default=False)] = None,
) -> None:
    """Render the HTML report: paper tables vs ours, Fig. 5-7 style figures, runs, provenance (one file)."""
    problem = layout_problem(results) or (compare_to is not None and layout_problem(compare_to, needs_runs=True))
    if problem:
        fail(problem)
    typer.echo(f"report: {render(results, out or default_report_dir(results), title, compare_to)}")


def runs(
    results: Results = Path("results"),
    status: Annotated[str, choice("status", lambda: STATUSES, "only the records of this status", optional=True)]
    = None,
    stale: Annotated[bool, Opt("--stale", help="only the records not made by the running code (another code "
                                               "fingerprint, or none recorded)")] = False,
    as_json: Annotated[bool, Opt("--json", help="print the rows as a JSON list of objects")] = False,
) -> None:
    """List the run records, one line each: what ran, status, main metrics, code version and fingerprint, data
    fingerprint, when it finished."""
    import warnings

    from rdbench.bench.runs_table import format_frame, runs_frame
    from rdbench.records.store import read_records

    problem = layout_problem(results, needs_runs=True)
    if problem:
        fail(problem)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        records = read_records(results)
    for w in caught:  # a corrupt record: named, and left out of the listing
        typer.secho(f"warning: {w.message}", fg=typer.colors.YELLOW, err=True)
    frame = runs_frame(records, status=status, stale=stale)
    if as_json:
        typer.echo(frame.to_json(orient="records"))
    elif frame.empty:
        typer.echo(f"no {'stale ' if stale else ''}records{f' with status {status}' if status else ''} in "
                   f"{results / 'runs'} ({len(records)} in all)")
    else:
        typer.echo(format_frame(frame))


def baseline_save(
    results: Annotated[list[Path], Opt(help="results folder whose records form the baseline; repeat it for the "
                                            "same seeds run on other machines or thread counts")],
    out: Annotated[Path, Opt(help="baseline JSON to write (commit it next to the code)")],
    floor: Annotated[float, Opt(help="absolute tolerance floor stored in the baseline (0.01 = 1 point)")] = 0.01,
    other_floor: Annotated[float, Opt(help="least tolerance for a run on kernels the baseline lacks (default: "
                                           "--floor): the largest change of one seed seen between machines",
                                      show_default=False)] = None,
) -> None:
    """Store per cell (settings without seed) and metric the mean and spread over seeds, and every run with its
    seed and kernels (README, Regression baselines)."""
    from rdbench.bench.baseline import save_baseline

    try:
        b = save_baseline(list(results), out, floor=floor, other_floor=other_floor)
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
    allow_stale: Annotated[bool, Opt(help="accept records made by other code than the running one (by default "
                                          "they fail the check: they would compare old code with the baseline)")]
    = False,
    stat: Annotated[bool, Opt("--stat", help="a regression is a drop whose 95% interval (bootstrap over seeds and "
                                            "the same test images) lies wholly below -floor; needs a baseline saved "
                                            "with scores sidecars")] = False,
    min_seeds: Annotated[int, Opt("--min-seeds", min=1, help="--stat: seeds per side (fresh and baseline) the "
                                                             "interval needs to judge; with fewer, that row falls "
                                                             "back to the tolerance rule")] = 3,
) -> None:
    """Compare fresh records with a baseline; exit 1 on a regression beyond the tolerance (--stat: a drop whose
    interval lies wholly below -floor), a missing cell, or a record not made by the running code; exit 2 when a
    record and its scores sidecar (or the baseline and a sidecar it keeps) disagree."""
    from rdbench.bench.baseline import check, format_rows
    from rdbench.bench.baseline_stat import check_stat
    from rdbench.bench.reuse import short, stale_records
    from rdbench.records.provenance import code_fingerprint
    from rdbench.records.store import read_records

    stale = [] if allow_stale else [r for r in stale_records(read_records(results)) if r.ok]
    if stale:
        names = "\n".join(f"  {Path(r.record_path or '?').name}  (code {short(r.code_fingerprint)})" for r in stale)
        fail(f"{len(stale)} record(s) in {results} were not made by the running code {short(code_fingerprint())}; "
             f"checking them would check old code:\n{names}\nRerun them (rdbench reproduce ... --rerun stale), or "
             f"pass --allow-stale to check them anyway", code=1)

    notes: list[str] = []
    try:
        rows = (check_stat(baseline, results, tolerance=tolerance, floor=floor, min_seeds=min_seeds, notes=notes)
                if stat else check(baseline, results, tolerance=tolerance, floor=floor, notes=notes))
    except (OSError, ValueError) as exc:  # SidecarMismatch is a ValueError: exit 2, never a verdict
        fail(str(exc))
    bad = [r for r in rows if r.status in ("REGRESSION", "MISSING")]
    typer.echo(format_rows(rows, only_problems=not verbose and bool(bad)))
    for note in notes:
        typer.echo(f"note: {note}")
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "improved", "REGRESSION", "MISSING")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    if bad:
        raise typer.Exit(1)
