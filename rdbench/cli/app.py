"""The ``rdbench`` command: its sub-commands, from the modules that hold them, and ``--version``."""

from __future__ import annotations

from typing import Annotated

import typer

from rdbench.cli import compare, fetch, golden, perf, results, run, sweep

app = typer.Typer(no_args_is_help=True, add_completion=True,
                  help="Benchmark and reproducibility harness for RD4AD (Reverse Distillation, CVPR 2022).")


def version_text() -> str:
    from rdbench import __version__
    from rdbench.records.provenance import code_fingerprint, git_state

    git = git_state()
    commit = f", git {git['commit'][:12]}{' (dirty)' if git['dirty'] else ''}" if git["commit"] else ""
    return f"rdbench {__version__} (code {code_fingerprint()[:16]}{commit})"


def _version(value: bool) -> None:
    if value:
        typer.echo(version_text())
        raise typer.Exit()


@app.callback()
def main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                               help="print the version and the code fingerprint, then exit")]
         = False) -> None:
    """Benchmark and reproducibility harness for RD4AD (Reverse Distillation, CVPR 2022)."""


app.command()(run.run)
app.command("make-synthetic")(run.make_synthetic)
app.command("list")(run.list_names)
app.command()(run.demo)
app.command()(sweep.reproduce)
app.command("fetch")(fetch.fetch)
app.command()(results.report)
app.command()(results.runs)
app.command("compare")(compare.compare)
app.command("profile")(perf.profile)
app.command()(perf.parity)

baseline_app = typer.Typer(no_args_is_help=True, help="Regression baselines from run records: save, check.")
baseline_app.command("save")(results.baseline_save)
baseline_app.command("check")(results.baseline_check)
app.add_typer(baseline_app, name="baseline")
app.command("check", help="Alias of `rdbench baseline check`.")(results.baseline_check)

golden_app = typer.Typer(no_args_is_help=True, help="The exact regression check: a float64 suite of small runs "
                                                   "against results/baselines/golden.json, the same on any CPU.")
golden_app.command("check")(golden.check)
golden_app.command("save")(golden.save)
app.add_typer(golden_app, name="golden")
