"""Commands about one run and its data: ``run``, ``make-synthetic``, ``list``, ``demo``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import (
    Amp,
    Bottleneck,
    CheckpointEverySeconds,
    Device,
    EvalProtocol,
    FeatureCacheGb,
    Loss,
    Progress,
    Protocol,
    ProtocolBackbone,
    Results,
    Weights,
    fail,
    parse_ints,
    render,
    teacher_banner,
)
from rdbench.config import RunConfig

Opt = typer.Option


# The help texts below name each protocol's default; tests/test_cli.py holds them to the protocols' own.
PROTOCOL_DEFAULT = "default: the protocol's"


def run(
    category: Annotated[str, Opt(help="MVTec category folder, or class index for novelty protocols")],
    data_root: Annotated[Path, Opt(help="dataset root (MVTec AD layout for --protocol mvtec; torchvision root "
                                        "for mnist/fashionmnist/cifar10/caltech256)", show_default=False)] = None,
    protocol: Protocol = "mvtec",
    backbone: ProtocolBackbone = None,
    epochs: Annotated[int, Opt(help=f"training epochs ({PROTOCOL_DEFAULT}: 200 for every protocol)",
                               show_default=False)] = None,
    image_size: Annotated[int, Opt(help=f"input size, multiple of 32 ({PROTOCOL_DEFAULT}: 256 mvtec, 32 mnist, "
                                        "fashionmnist, cifar10, 64 caltech256)", show_default=False)] = None,
    batch_size: Annotated[int, Opt(help=f"training batch size ({PROTOCOL_DEFAULT}: 16 for every protocol)",
                                   show_default=False)] = None,
    weights: Weights = "imagenet",
    bottleneck: Bottleneck = "pre+oce+mff",
    layers: Annotated[str, Opt(help="Table 7: teacher layers used in loss and map, e.g. 2,3")] = "1,2,3",
    loss: Loss = "flat",
    seed: Annotated[int, Opt(help="seed of this run (initial weights and shuffling)")] = 111,
    lr: Annotated[float, Opt(help=f"Adam learning rate ({PROTOCOL_DEFAULT}: 0.005, the paper's)",
                             show_default=False)] = None,
    caltech_split_seed: Annotated[int, Opt(help="caltech256 only: seed of the train/test split (default 0)",
                                           show_default=False)] = None,
    caltech_test_fraction: Annotated[float, Opt(help="caltech256 only: share of the normal images tested "
                                                     "(default 0.2)", show_default=False)] = None,
    device: Device = "auto",
    results: Results = Path("results"),
    resume: Annotated[bool, Opt(help="continue from this config's last epoch checkpoint")] = False,
    checkpoint_every_s: CheckpointEverySeconds = None,
    max_train_images: Annotated[int, Opt(help="use only the first N training images (smoke runs)",
                                         show_default=False)] = None,
    max_test_images: Annotated[int, Opt(help="stratified subset of N test images (novelty smoke runs)",
                                        show_default=False)] = None,
    eval_protocol: EvalProtocol = "final",
    amp: Amp = "none",
    feature_cache_gb: FeatureCacheGb = None,
    exact_eval: Annotated[bool, Opt("--exact-eval", help="score one image at a time with the model's own "
                                                         "arithmetic, as the authors' evaluation() does (equal to "
                                                         "1e-8); the faster default copy: PRO within ~5e-6")] = False,
    progress: Progress = True,
) -> None:
    """Train and evaluate one run; write its record (JSON) and print its metrics. Options not given take the
    protocol's defaults, so a run has the hash of the same run in a `rdbench reproduce` table."""
    from rdbench.engine.device import check_amp, resolve_device
    from rdbench.engine.run import run_one

    if data_root is None and protocol == "mvtec":
        fail("--data-root is required for --protocol mvtec")
    if checkpoint_every_s is not None and not checkpoint_every_s >= 0:
        fail(f"--checkpoint-every-s must be >= 0 (0 = every epoch, inf = never), got {checkpoint_every_s}")
    try:
        config = build_run_config(protocol, category, data_root=str(data_root or ""), backbone=backbone,
                                  weights=weights, bottleneck=bottleneck, layers=parse_ints(layers, "--layers"),
                                  loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                                  seed=seed, device=device, max_train_images=max_train_images,
                                  max_test_images=max_test_images, eval_protocol=eval_protocol, amp=amp,
                                  feature_cache_gb=feature_cache_gb, caltech_split_seed=caltech_split_seed,
                                  caltech_test_fraction=caltech_test_fraction, exact_eval=exact_eval or None)
        check_amp(amp, resolve_device(device))  # fp16 on a CPU: before any work
    except ValueError as exc:
        fail(str(exc))
    try:
        record = run_one(config, results, progress=progress, resume=resume, checkpoint_every_s=checkpoint_every_s)
    except OSError as exc:  # results folder unwritable: nothing could be recorded
        fail(str(exc))
    if not record.ok:
        fail(f"run failed: {record.error}\nrecord: {record.record_path}", code=1)
    typer.echo(teacher_banner(record.teacher_weights))
    typer.echo(json.dumps({k: None if v is None else round(v, 4) for k, v in record.metrics.items()}))
    for name, why in record.metric_errors.items():
        typer.secho(f"warning: {name} not computed: {why}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"record: {record.record_path}")


def build_run_config(protocol: str, category: str, caltech_split_seed: int | None = None,
                     caltech_test_fraction: float | None = None, **options) -> RunConfig:
    """The config of ``rdbench run``: the protocol's defaults, then every option given (not None); built by
    ``Protocol.config`` like the tables' grids. ValueError on a bad value or a setting of another protocol."""
    from rdbench.engine.protocol import get_protocol

    proto = get_protocol(protocol)
    split = {k: v for k, v in (("split_seed", caltech_split_seed), ("test_fraction", caltech_test_fraction))
             if v is not None}
    if split and not set(split) <= set(proto.defaults().get("extra", {})):
        raise ValueError(f"--caltech-split-seed and --caltech-test-fraction are settings of --protocol caltech256, "
                         f"not of {protocol}")
    return proto.config(category=category, extra=split, **options)


def make_synthetic(
    out: Annotated[Path, Opt(help="output folder (MVTec AD layout)")],
    seed: Annotated[int, Opt(help="same seed, same bytes")] = 0,
    categories: Annotated[str, Opt(help="comma-separated subset; empty = all")] = "",
    n_train: int = 40,
    n_test_good: int = 10,
    n_test_bad: int = 20,
    size: Annotated[int, Opt(help="image side in pixels")] = 256,
) -> None:
    """Write a synthetic anomaly dataset (real texture photos + procedural objects, drawn defects)."""
    from rdbench.data.synthetic import make_synthetic as make

    cats = [c for c in categories.split(",") if c] or None
    try:
        summary = make(out, seed=seed, categories=cats, n_train=n_train, n_test_good=n_test_good,
                       n_test_bad=n_test_bad, size=size)
    except ValueError as exc:
        fail(str(exc))
    for name, cat in summary.categories.items():
        defects = ", ".join(f"{d} {n}" for d, n in cat.defects.items())
        typer.echo(f"{name:<8} {cat.kind:<8} train {cat.n_train}, test good {cat.n_test_good}, {defects}")
    typer.echo(f"wrote {summary.root} in {summary.seconds:.1f} s (seed {summary.seed}, {summary.size} px)")


def list_names() -> None:
    """List what is registered: backbones, protocols, tables, bottlenecks, losses, executors."""
    from rdbench.bench.executors import EXECUTORS
    from rdbench.bench.tables import TABLES
    from rdbench.engine.losses import LOSSES
    from rdbench.engine.protocol import PROTOCOLS
    from rdbench.models.backbones import BACKBONES
    from rdbench.models.rd import BOTTLENECKS

    for kind, registry in (("backbones", BACKBONES), ("protocols", PROTOCOLS), ("tables", TABLES),
                           ("bottlenecks", BOTTLENECKS), ("losses", LOSSES), ("executors", EXECUTORS)):
        typer.echo(f"{kind + ':':<13}{', '.join(registry.names())}")


def demo(
    results: Annotated[Path, Opt("--results", "--out", help="folder for the synthetic data, the run records and "
                                                             "the report (--out: the former name)")]
    = Path("results/demo"),
    epochs: Annotated[int, Opt(help="override the demo's epochs", show_default=False)] = None,
    categories: Annotated[str, Opt(help="comma-separated synthetic categories (default brick,gravel,nut)")] = "",
    seed: Annotated[int, Opt(help="training seed; a baseline meant for other machines needs several (README, "
                                  "Regression baselines): run the demo once per seed into one --results")] = 111,
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """Generate synthetic data, train and evaluate resnet18 on 3 categories, print a summary table."""
    from rdbench.cli.demo import DemoSettings, run_demo, summary_table
    from rdbench.data.synthetic import SYNTHETIC_CATEGORIES
    from rdbench.registry import unknown_choice

    settings = dataclasses.replace(DemoSettings(), seed=seed)
    if epochs is not None:
        if epochs < 1:
            fail(f"--epochs must be >= 1, got {epochs}")
        settings = dataclasses.replace(settings, epochs=epochs)
    if categories:
        cats = tuple(c for c in categories.split(",") if c)
        unknown = [c for c in cats if c not in SYNTHETIC_CATEGORIES]
        if unknown:
            fail(unknown_choice("synthetic category", ",".join(unknown), SYNTHETIC_CATEGORIES))
        settings = dataclasses.replace(settings, categories=cats)
    try:
        records = run_demo(results, settings, progress=progress, device=device)
    except (OSError, ValueError) as exc:
        fail(str(exc))
    typer.echo("")
    typer.echo(summary_table(records))
    typer.echo(f"records: {Path(results) / 'runs'}")
    typer.echo(f"report: {render(Path(results), title='rdbench demo')}")
    if any(not r.ok for r in records):
        raise typer.Exit(1)
