"""``rdbench reproduce``: a paper table's grid of runs, the ones not yet recorded run, the table printed."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import (
    Amp,
    BackboneOverride,
    CheckpointEverySeconds,
    Device,
    EvalProtocol,
    Executor,
    FeatureCacheGb,
    Progress,
    Results,
    Weights,
    choice,
    default_report_dir,
    fail,
    render,
)

Opt = typer.Option
KEEP_MODELS = ("all", "none")
KeepModels = Annotated[str, choice("--keep-models value", lambda: KEEP_MODELS, "all: keep each trained model in "
                                   "<results>/checkpoints (Ray: in --checkpoint-dir) | none: records only")]
# rdbench.bench.tables.TABLE7_READINGS, spelled here so that --help needs no import of the sweep machinery
TABLE7_READINGS = ("score-map", "loss-and-map")
Table7Reading = Annotated[str, choice("Table 7 reading", lambda: TABLE7_READINGS,
                                      "score-map: each column scores Table 1's models with the maps of its layers "
                                      "(no extra training) | loss-and-map: one model per column, trained and "
                                      "scored on its layers")]


def reproduce(
    table: Annotated[str, Opt(help="paper table: 1..7, a comma-separated list (all its data must be there), or "
                                   "all (runs what the data allows, lists what it skipped and why, exits 1)")],
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
    table7_reading: Table7Reading = "score-map",
    dry_run: Annotated[bool, Opt(help="list the runs and their estimated cost; train nothing (with --table all, "
                                      "also check the data to list what would be skipped)")] = False,
    rerun: Annotated[list[str], Opt(help="run again what records would answer: stale (ok records of other code, "
                                         "or without fingerprints), failed, all; repeatable. Records of other data "
                                         "always run again", metavar="[stale|failed|all]", show_default=False)]
    = None,
    amp: Amp = "none",
    feature_cache_gb: FeatureCacheGb = None,
    progress: Progress = True,
    keep_models: KeepModels = "all",
    checkpoint_every_s: CheckpointEverySeconds = None,
    checkpoint_dir: Annotated[Path, Opt(help="Ray: a folder every worker sees, for resume checkpoints (and kept "
                                             "models); without it an interrupted Ray task starts over",
                                        show_default=False)] = None,
    claim_timeout_s: Annotated[float, Opt(help="take over a run claimed by another sweep whose heartbeat is older "
                                               "than this (a process of this host that is gone: at once)")] = 600.0,
) -> None:
    """Run everything a paper table needs (skipping runs already recorded) and print it, paper vs ours."""
    import time

    import torch

    from rdbench.bench import disk
    from rdbench.bench.driver import SweepSettings
    from rdbench.bench.executors import run_configs
    from rdbench.bench.missing_data import find_missing, format_problems, format_skipped
    from rdbench.bench.reproduce import (
        describe,
        estimate_seconds,
        format_seconds,
        plan,
        print_tables,
        save_sweep,
    )
    from rdbench.bench.reuse import plan_reuse
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
    if checkpoint_every_s is not None and not checkpoint_every_s >= 0:
        fail(f"--checkpoint-every-s must be >= 0 (0 = every epoch, inf = never), got {checkpoint_every_s}")
    if not claim_timeout_s > 0:
        fail(f"--claim-timeout-s must be > 0, got {claim_timeout_s}")
    if checkpoint_dir is not None and executor != "ray":
        fail("--checkpoint-dir is for --executor ray (the local executor keeps its checkpoints in --results)")
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
                       amp=amp, feature_cache_gb=feature_cache_gb, table7_reading=table7_reading)
    if opts.limit_categories:
        valid = {c for t in tables for c in t.categories(opts)}
        unknown = [c for c in opts.limit_categories if c not in valid]
        if unknown:
            fail(f"unknown categories {', '.join(unknown)} for table(s) {table}; valid: {', '.join(sorted(valid))}")
    try:
        planned = plan(tables, opts)
    except ValueError as exc:
        fail(str(exc))
    since = time.time()  # a record written after this was made by another sweep meanwhile: not trained again
    try:
        reuse = plan_reuse([p.config for p in planned], results, rerun or ())
    except ValueError as exc:
        fail(str(exc))
    for line in reuse.summary():
        typer.secho(line, fg=typer.colors.YELLOW, err=True)
    todo_hashes = {c.hash() for c in reuse.todo}
    for p in planned:
        p.done = p.config.hash() not in todo_hashes
    todo = [p for p in planned if not p.done]
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    for t in tables:
        for note in t.notes(opts):
            typer.echo(f"note (table {t.key}): {note}")
    # "all" runs whatever its data allows and lists the rest at the start and at the end (exit 1); chosen
    # tables need all their data, checked before any training (their dry run checks nothing, as before)
    partial = table == "all"
    if not partial and not dry_run and any(p.config.protocol == "mvtec" for p in todo) and not data_root:
        fail("--data-root (the MVTec AD folder) is required for these tables")
    skipped = find_missing(todo, tables, opts) if partial or not dry_run else []
    if skipped and not partial:
        fail("data problems, nothing was trained:\n" + format_problems(skipped))
    todo = [p for p in todo if not p.skipped]
    n_done, n_skipped = sum(p.done for p in planned), sum(p.skipped for p in planned)
    left_out = f", {n_skipped} skipped for missing data" if n_skipped else ""
    if skipped:
        typer.echo(format_skipped(skipped) + "\n")
    # what lands in --results: records always; models and checkpoints only from the local executor (Ray workers
    # write theirs to --checkpoint-dir or their own temp folders)
    here = executor == "local"
    need = disk.estimate([p.config for p in todo], keep_models == "all" and here,
                         checkpoints_here=here and checkpoint_every_s != float("inf"))
    if dry_run:
        for p in planned:
            typer.echo(describe(p))
        cost = sum(estimate_seconds(p.config, cuda) for p in todo)
        typer.echo(f"{len(planned)} runs: {n_done} already recorded in {results}, {len(todo)} to run{left_out}; "
                   f"rough estimate {format_seconds(cost)} of training on {'CUDA' if cuda else 'this CPU'}")
        typer.echo(f"disk: {need.describe()} in {results}")
        if skipped:
            typer.echo("\n" + format_skipped(skipped))
        return
    refusal = disk.check_space(results, need)
    if refusal:
        fail(refusal)
    typer.echo(f"{len(planned)} runs: {n_done} already recorded, running {len(todo)} with the {executor} "
               f"executor{left_out}")
    save_sweep(results, tables, opts)

    def report(rec) -> None:
        c = rec.config
        status = "ok" if rec.ok else f"FAILED: {rec.error}"
        typer.echo(f"  {c.protocol}/{c.category} {c.backbone} seed {c.seed}: {status}")

    claimed: list[str] = []  # runs another sweep on this folder trains (or has just recorded)

    def skip(config, why: str) -> None:
        claimed.append(f"  {config.protocol}/{config.category} {config.backbone} seed {config.seed}: {why}")

    settings = SweepSettings(keep_models=keep_models == "all", checkpoint_every_s=checkpoint_every_s,
                             checkpoint_dir=str(checkpoint_dir) if checkpoint_dir else None,
                             claim_timeout_s=claim_timeout_s, since=since)
    try:
        records = run_configs([p.config for p in todo], results, executor=executor, address=address,
                              progress=progress, on_record=report, settings=settings, on_skip=skip)
    except (OSError, ValueError, ImportError) as exc:
        fail(str(exc))
    if claimed:
        typer.echo(f"skipped {len(claimed)} run(s) another process on {results} trains or has trained:\n"
                   + "\n".join(claimed) + "\nthe tables below lack those still running; reproduce again once they "
                   "have finished")
    print_tables(tables, opts, read_records(results), echo=typer.echo)
    typer.echo(f"\nreport: {render(results, default_report_dir(results))}")
    failed = [r for r in records if not r.ok]
    if skipped:
        typer.echo("\n" + format_skipped(skipped))
        typer.secho(f"{n_skipped} run(s) skipped for missing data (listed above)", fg=typer.colors.RED, err=True)
    if failed:
        typer.secho(f"{len(failed)} run(s) failed; their records hold the errors", fg=typer.colors.RED, err=True)
    if failed or skipped:
        raise typer.Exit(1)
