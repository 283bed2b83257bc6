"""Commands about one run and its data: ``run``, ``make-synthetic``, ``list``, ``demo``."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import (
    Amp,
    Backbone,
    Bottleneck,
    Device,
    EvalProtocol,
    FeatureCacheGb,
    Loss,
    Progress,
    Protocol,
    Results,
    Weights,
    fail,
    parse_ints,
    render,
    teacher_banner,
)
from rdbench.config import RunConfig

Opt = typer.Option


def run(
    category: Annotated[str, Opt(help="MVTec category folder, or class index for novelty protocols")],
    data_root: Annotated[Path, Opt(help="dataset root (MVTec AD layout for --protocol mvtec; torchvision root "
                                        "for mnist/fashionmnist/cifar10/caltech256)", show_default=False)] = None,
    protocol: Protocol = "mvtec",
    backbone: Backbone = "wide_resnet50_2",
    epochs: Annotated[int, Opt(help="training epochs (paper: 200)")] = 200,
    image_size: Annotated[int, Opt(help="input size, multiple of 32 (paper: 256)")] = 256,
    batch_size: Annotated[int, Opt(help="training batch size (paper: 16)")] = 16,
    weights: Weights = "imagenet",
    bottleneck: Bottleneck = "pre+oce+mff",
    layers: Annotated[str, Opt(help="Table 7: teacher layers used in loss and map, e.g. 2,3")] = "1,2,3",
    loss: Loss = "flat",
    seed: Annotated[int, Opt(help="seed of this run (initial weights and shuffling)")] = 111,
    lr: Annotated[float, Opt(help="Adam learning rate (paper: 0.005)")] = 0.005,
    device: Device = "auto",
    results: Results = Path("results"),
    resume: Annotated[bool, Opt(help="continue from this config's last epoch checkpoint")] = False,
    checkpoint_every_s: Annotated[float, Opt(help="write a resume checkpoint after an epoch once this many seconds "
                                                  "passed since the last one (0 = every epoch)")] = 60.0,
    max_train_images: Annotated[int, Opt(help="use only the first N training images (smoke runs)",
                                         show_default=False)] = None,
    max_test_images: Annotated[int, Opt(help="stratified subset of N test images (novelty smoke runs)",
                                        show_default=False)] = None,
    eval_protocol: EvalProtocol = "final",
    amp: Amp = "none",
    feature_cache_gb: FeatureCacheGb = None,
    progress: Progress = True,
) -> None:
    """Train and evaluate one run; write its record (JSON) and print its metrics."""
    from rdbench.engine.device import check_amp, resolve_device
    from rdbench.engine.run import run_one

    if data_root is None and protocol == "mvtec":
        fail("--data-root is required for --protocol mvtec")
    try:
        config = RunConfig(protocol=protocol, data_root=str(data_root or ""), category=category, backbone=backbone,
                           weights=weights, bottleneck=bottleneck, layers=parse_ints(layers, "--layers"),
                           loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                           seed=seed, device=device, max_train_images=max_train_images,
                           max_test_images=max_test_images, eval_protocol=eval_protocol, amp=amp,
                           feature_cache_gb=feature_cache_gb)
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
    device: Device = "auto",
    progress: Progress = True,
) -> None:
    """Generate synthetic data, train and evaluate resnet18 on 3 categories, print a summary table."""
    from rdbench.cli.demo import DemoSettings, run_demo, summary_table
    from rdbench.data.synthetic import SYNTHETIC_CATEGORIES
    from rdbench.registry import unknown_choice

    settings = DemoSettings()
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
