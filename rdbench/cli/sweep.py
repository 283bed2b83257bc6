"""``rdbench reproduce``: a paper table's grid of runs, the ones not yet recorded run, the table printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import (
    Amp,
    BackboneOverride,
    Device,
    EvalProtocol,
    Executor,
    FeatureCacheGb,
    Progress,
    Results,
    Weights,
    default_report_dir,
    fail,
    render,
)

Opt = typer.Option


def reproduce(
    table: Annotated[str, Opt(help="paper table: 1..7, a comma-separated list, or all")],
    data_root: Annotated[Path, Opt(help="MVTec AD root (Tables 1-3, 5-7)", show_default=False)] = None,
    novelty_root: Annotated[Path, Opt(help="root of MNIST/FashionMNIST/CIFAR-10/Caltech-256 (Table 4); default: "
                                           "--data-root; FashionMNIST also found in /usr/share/datasets/fashion-mnist",
                                      show_default=False)] = None,
    results: Results = Path("results"),
    device: Device = "auto",
    executor: Executor = "local",
    address: Annotated[str, Opt(help="Ray cluster: auto | HOST:PORT (default: start a local one)",
                                show_default=False)] = None,
    seeds: Annotated[int, Opt(help="runs per cell (seeds 111, 112, ...); mean and std are reported")] = 1,
    eval_protocol: EvalProtocol = "final",
    epochs: Annotated[int, Opt(help="override the paper's 200 epochs", show_default=False)] = None,
    limit_categories: Annotated[str, Opt(help="comma-separated categories/classes to cover")] = "",
    weights: Weights = "imagenet",
    max_train_images: Annotated[int, Opt(help="train on the first N images only (smoke sweeps)",
                                         show_default=False)] = None,
    max_test_images: Annotated[int, Opt(help="stratified test subset (novelty smoke sweeps)",
                                        show_default=False)] = None,
    batch_size: Annotated[int, Opt(help="override the paper's batch size 16", show_default=False)] = None,
    image_size: Annotated[int, Opt(help="override the image size where a table does not vary it",
                                   show_default=False)] = None,
    backbone: BackboneOverride = None,
    caltech_split_seed: Annotated[int, Opt(help="Table 4, Caltech-256: seed of the train/test split")] = 0,
    caltech_test_fraction: Annotated[float, Opt(help="Table 4, Caltech-256: share of the normal images tested")] = 0.2,
    dry_run: Annotated[bool, Opt(help="list the runs and their estimated cost; train nothing")] = False,
    amp: Amp = "none",
    feature_cache_gb: FeatureCacheGb = None,
    progress: Progress = True,
) -> None:
    """Run everything a paper table needs (skipping runs already recorded) and print it, paper vs ours."""
    import torch

    from rdbench.bench.executors import pending, run_configs
    from rdbench.bench.reproduce import (
        check_all_data,
        describe,
        estimate_seconds,
        format_seconds,
        plan,
        print_tables,
        save_sweep,
    )
    from rdbench.bench.tables import GridOptions, all_tables, get_table
    from rdbench.engine.device import check_amp, resolve_device
    from rdbench.records.store import read_records

    try:
        tables = all_tables() if table == "all" else [get_table(k) for k in table.split(",") if k]
    except ValueError as exc:
        fail(f"{exc} (or all)")
    if seeds < 1:
        fail(f"--seeds must be >= 1, got {seeds}")
    if epochs is not None and epochs < 1:
        fail(f"--epochs must be >= 1, got {epochs}")
    if feature_cache_gb is not None and feature_cache_gb < 0:
        fail(f"--feature-cache-gb must be >= 0 (0 = no cache), got {feature_cache_gb}")
    if executor == "local":  # Ray workers resolve the device on their own machines
        try:
            check_amp(amp, resolve_device(device))
        except ValueError as exc:
            fail(str(exc))
    opts = GridOptions(data_root=str(data_root or ""), novelty_root=str(novelty_root or data_root or ""),
                       seeds=seeds, epochs=epochs, device=device, eval_protocol=eval_protocol, weights=weights,
                       limit_categories=tuple(c for c in limit_categories.split(",") if c),
                       max_train_images=max_train_images, max_test_images=max_test_images,
                       batch_size=batch_size, image_size=image_size, backbone=backbone,
                       caltech_split_seed=caltech_split_seed, caltech_test_fraction=caltech_test_fraction,
                       amp=amp, feature_cache_gb=feature_cache_gb)
    if opts.limit_categories:
        valid = {c for t in tables for c in t.categories(opts)}
        unknown = [c for c in opts.limit_categories if c not in valid]
        if unknown:
            fail(f"unknown categories {', '.join(unknown)} for table(s) {table}; valid: {', '.join(sorted(valid))}")
    try:
        planned = plan(tables, opts)
    except ValueError as exc:
        fail(str(exc))
    todo_hashes = {c.hash() for c in pending([p.config for p in planned], results)}
    for p in planned:
        p.done = p.config.hash() not in todo_hashes
    todo = [p for p in planned if not p.done]
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    for t in tables:
        for note in t.notes(opts):
            typer.echo(f"note (table {t.key}): {note}")
    if dry_run:
        for p in planned:
            typer.echo(describe(p))
        cost = sum(estimate_seconds(p.config, cuda) for p in todo)
        typer.echo(f"{len(planned)} runs: {len(planned) - len(todo)} already recorded in {results}, {len(todo)} to "
                   f"run; rough estimate {format_seconds(cost)} of training on {'CUDA' if cuda else 'this CPU'}")
        return
    if any(p.config.protocol == "mvtec" for p in todo) and not data_root:
        fail("--data-root (the MVTec AD folder) is required for these tables")
    problems = check_all_data([p.config for p in todo])
    if problems:
        fail("data problems, nothing was trained:\n" + "\n\n".join(problems))
    typer.echo(f"{len(planned)} runs: {len(planned) - len(todo)} already recorded, running {len(todo)} "
               f"with the {executor} executor")
    save_sweep(results, tables, opts)

    def report(rec) -> None:
        c = rec.config
        status = "ok" if rec.ok else f"FAILED: {rec.error}"
        typer.echo(f"  {c.protocol}/{c.category} {c.backbone} seed {c.seed}: {status}")

    try:
        records = run_configs([p.config for p in todo], results, executor=executor, address=address,
                              progress=progress, on_record=report)
    except (OSError, ValueError, ImportError) as exc:
        fail(str(exc))
    print_tables(tables, opts, read_records(results), echo=typer.echo)
    typer.echo(f"\nreport: {render(results, default_report_dir(results))}")
    failed = [r for r in records if not r.ok]
    if failed:
        typer.secho(f"{len(failed)} run(s) failed; their records hold the errors", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)
