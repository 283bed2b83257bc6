"""``rdbench golden check`` / ``rdbench golden save``: the float64 suite as an exact regression check
(rdbench.bench.golden, rdbench.bench.golden_file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import fail

Opt = typer.Option
DEVICE_HELP = "where the suite runs (cpu; cuda holds only with deterministic cuBLAS/cuDNN, see docs/parity.md)"


def _suite(device: str, quiet: bool):
    from rdbench.bench.golden import GoldenError, run_suite

    def said(name: str, seconds: float) -> None:
        if not quiet:
            typer.echo(f"  ran {name} ({seconds:.1f} s)", err=True)

    try:
        return run_suite(device=device, on_case=said)
    except GoldenError as exc:
        fail(f"the golden suite could not run: {exc}")


def check(
    golden: Annotated[Path, Opt("--golden", help="the golden file (default: results/baselines/golden.json of "
                                                 "this checkout)", show_default=False)] = None,
    as_json: Annotated[bool, Opt("--json", help="print the result as one JSON object")] = False,
    device: Annotated[str, Opt(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Run the float64 suite and compare every stage of every case with the golden file at a relative 1e-9.
    Exit 1 naming, per case, the first stage that moved with its old and new values; 0 when nothing moved."""
    from rdbench.bench import golden_file as gf

    path = golden or gf.DEFAULT_GOLDEN
    try:
        saved = gf.load(path)
    except gf.GoldenFileError as exc:
        fail(str(exc))
    result = _suite(device, as_json)
    moved, broken = gf.compare(saved["cases"], result.values), gf.relations(result.values)
    if as_json:
        typer.echo(json.dumps({"ok": not moved and not broken, "golden": str(path), "total_s": result.total_s,
                               "seconds": result.seconds, "moved": [m.to_dict() for m in moved],
                               "relations": [m.to_dict() for m in broken], "machine": gf.machine()}, indent=1))
    else:
        bad = {m.case for m in moved}
        for name, seconds in result.seconds.items():
            if name not in bad:
                typer.echo(f"ok     {name} ({seconds:.1f} s)")
        for m in moved:
            typer.echo(f"MOVED  {m.describe()}")
        for m in broken:
            typer.echo(f"BROKEN {m.describe()} (these two cases must agree by construction)")
        last, here = saved.get("history", [{}])[-1], gf.machine()
        typer.echo(f"{len(result.values) - len(bad)} of {len(result.values)} case(s) as in {path} (saved "
                   f"{last.get('date', '?')}: {last.get('reason', '?')}); {result.total_s:.1f} s on "
                   f"{here['cpu']} ({here['kernels']}, {here['threads']} thread(s))")
    if moved or broken:
        if not as_json:
            typer.secho("the golden check failed: a change moved the numbers. If it is intended, re-save with "
                        "`rdbench golden save --out FILE --reason TEXT` and let the diff be reviewed",
                        fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


def save(
    out: Annotated[Path, Opt("--out", help="the golden file to write (its history is kept)")],
    reason: Annotated[str, Opt("--reason", help="why the numbers change: a line of the file's history")],
    device: Annotated[str, Opt(help=DEVICE_HELP)] = "cpu",
) -> None:
    """Run the float64 suite and write its values to OUT, adding REASON (with the date, the code and the machine,
    and which cases moved) to the history the file keeps."""
    from rdbench.bench import golden_file as gf

    if not reason.strip():
        fail("--reason must say why the numbers change")
    try:
        if out.exists():
            gf.load(out)  # a file that is not a golden file is not overwritten
    except gf.GoldenFileError as exc:
        fail(str(exc))
    result = _suite(device, False)
    broken = gf.relations(result.values)
    if broken:
        fail("not saved: cases that must agree by construction differ:\n" + "\n".join(m.describe() for m in broken))
    _, moved = gf.save(out, result, reason, device)
    for m in moved:
        typer.echo(f"moved  {m.describe()}")
    typer.echo(f"wrote {out}: {len(result.values)} case(s), {result.total_s:.1f} s; {len(moved)} case(s) moved")
