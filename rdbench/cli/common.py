"""What every command shares: options defined once (with their valid values in --help), failing cleanly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from rdbench.config import AMP_CHOICES, EVAL_PROTOCOLS
from rdbench.registry import unknown_choice


def fail(message: str, code: int = 2) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        fail(f"{what} must be comma-separated integers, got {text!r}")


def teacher_banner(weights_info: dict | None) -> str:
    if weights_info and weights_info.get("kind") == "random":
        return "RANDOM TEACHER (no ImageNet weights): numbers are not comparable with the paper"
    return f"teacher weights: {weights_info.get('name') if weights_info else 'unknown'}"


def choice(kind: str, names: Callable[[], Sequence[str]], help: str, optional: bool = False) -> typer.models.OptionInfo:
    """An option whose value must be one of ``names()`` (a registry's, or a fixed tuple): --help lists them,
    the shell completes them, and a wrong value fails with the registries' own wording."""

    def parse(value: str) -> str:
        valid = list(names())
        if value not in valid:  # worded like every other error (not click's boxed "Invalid value")
            fail(unknown_choice(kind, value, valid))
        return value

    metavar = "[" + "|".join(names()) + "]"
    return typer.Option(parser=parse, metavar=metavar, help=help, autocompletion=lambda: list(names()),
                        show_default=not optional)


def _backbones() -> list[str]:
    from rdbench.models.backbones import BACKBONES

    return BACKBONES.names()


def _protocols() -> list[str]:
    from rdbench.engine.protocol import PROTOCOLS

    return PROTOCOLS.names()


def _bottlenecks() -> list[str]:
    from rdbench.models.rd import BOTTLENECKS

    return BOTTLENECKS.names()


def _losses() -> list[str]:
    from rdbench.engine.losses import LOSSES

    return LOSSES.names()


def _executors() -> list[str]:
    from rdbench.bench.executors import EXECUTORS

    return EXECUTORS.names()


# Options used by several commands, defined once. ``--results``: a folder of records (read or written);
# ``--out``: what a command writes that is not records (a report, a dataset, a baseline file).
Backbone = Annotated[str, choice("backbone", _backbones, "teacher backbone")]
BackboneOverride = Annotated[str, choice("backbone", _backbones, "override the backbone where a table does not "
                                         "vary it (not Table 6)", optional=True)]
ProtocolBackbone = Annotated[str, choice("backbone", _backbones, "teacher backbone (default: the protocol's, "
                                         "wide_resnet50_2 mvtec, resnet18 mnist, fashionmnist, cifar10, "
                                         "caltech256)", optional=True)]
Protocol = Annotated[str, choice("protocol", _protocols, "evaluation protocol")]
Bottleneck = Annotated[str, choice("bottleneck", _bottlenecks, "Table 5 variant")]
Loss = Annotated[str, choice("loss", _losses, "flat (the authors' code) | pixel (the paper's Eq. 2)")]
Executor = Annotated[str, choice("executor", _executors, "local (sequential; Ray on this machine when it has "
                                 "several GPUs) | ray (one task per run)")]
Amp = Annotated[str, choice("amp", lambda: AMP_CHOICES, "mixed precision: none (float32, the authors') | bf16 | "
                            "fp16 (CUDA only)")]
EvalProtocol = Annotated[str, choice("eval protocol", lambda: EVAL_PROTOCOLS, "final (last epoch) | paper (also "
                                     "every 10 epochs; the best epoch is reported as optimistic)")]
Device = Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N")]
Weights = Annotated[str, typer.Option(help="teacher weights: imagenet (torch hub cache) | none (random teacher) | "
                                           "FILE (a state_dict)")]
Results = Annotated[Path, typer.Option(help="results folder: records in <results>/runs")]
Progress = Annotated[bool, typer.Option(help="show progress bars")]
FeatureCacheGb = Annotated[float, typer.Option(help="GiB for the teacher-feature cache of training (default: "
                                                    "automatic; 0 = off)", show_default=False)]

CheckpointEverySeconds = Annotated[float, typer.Option(
    help="write a run's resume checkpoint after an epoch once this many seconds passed since the last (0 = every "
         "epoch, inf = never); default: adaptive, writing takes <= 5% of the training time", show_default=False)]


def default_report_dir(results: Path) -> Path:
    """The one default place of a results folder's report (report, reproduce and demo all use it)."""
    return Path(results) / "report"


def render(results: Path, out: Path | None = None, title: str | None = None, compare_to: Path | None = None) -> Path:
    """The report of a results folder; exit 2 when a record and its scores sidecar disagree (the report would show
    intervals of a sidecar that is not the record's)."""
    from rdbench.bench.sidecars import SidecarMismatch
    from rdbench.report import render_report

    out = out or default_report_dir(results)
    try:
        return render_report(results, out, title=title, compare_to=compare_to)
    except SidecarMismatch as exc:
        fail(f"no report: {exc}")
    except OSError as exc:
        fail(f"cannot write the report to {out}: {exc}")
