"""The ``rdbench`` command line (typer)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rdbench.config import AMP_CHOICES, RunConfig
from rdbench.registry import load_plugins

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark and reproducibility harness for RD4AD (Reverse Distillation, CVPR 2022).")


@app.callback()
def _start() -> None:
    load_plugins()  # the paper's protocols and tables (entry-point group rdbench.protocols), once


def _fail(message: str, code: int = 2) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        _fail(f"{what} must be comma-separated integers, got {text!r}")
        raise  # unreachable, for type checkers


def _check_choice(name: str, value: str, valid) -> None:
    if value not in valid:
        _fail(f"unknown {name} {value!r}; valid {name}s: {', '.join(valid)}")


def _check_amp_here(amp: str, device: str) -> None:
    """Fail before any work when ``amp`` cannot run on ``device`` as resolved on this machine (fp16 on a CPU)."""
    from rdbench.engine.device import check_amp, resolve_device

    check_amp(amp, resolve_device(device))


def _teacher_banner(weights_info: dict | None) -> str:
    if weights_info and weights_info.get("kind") == "random":
        return "RANDOM TEACHER (no ImageNet weights): numbers are not comparable with the paper"
    return f"teacher weights: {weights_info.get('name') if weights_info else 'unknown'}"


@app.command()
def run(
    data_root: Path = typer.Option(None, help="dataset root (MVTec AD layout for --protocol mvtec; torchvision "
                                              "root for mnist/fashionmnist/cifar10/caltech256)"),
    category: str = typer.Option(..., help="MVTec category folder, or class index for novelty protocols"),
    protocol: str = typer.Option("mvtec", help="evaluation protocol"),
    backbone: str = typer.Option("wide_resnet50_2", help="teacher backbone"),
    epochs: int = typer.Option(200, help="training epochs (paper: 200)"),
    image_size: int = typer.Option(256, help="input size, multiple of 32 (paper: 256)"),
    batch_size: int = typer.Option(16, help="training batch size (paper: 16)"),
    weights: str = typer.Option("imagenet", help="imagenet | none (random teacher) | path to a state_dict"),
    bottleneck: str = typer.Option("pre+oce+mff", help="Table 5 variant: pre | pre+oce | pre+oce+mff"),
    layers: str = typer.Option("1,2,3", help="Table 7: teacher layers used in loss and map, e.g. 2,3"),
    loss: str = typer.Option("flat", help="flat (authors' code) | pixel (paper's Eq. 2)"),
    seed: int = typer.Option(111, help="seed of this run (initial weights and shuffling)"),
    lr: float = typer.Option(0.005, help="Adam learning rate (paper: 0.005)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    results: Path = typer.Option(Path("results"), help="results folder; records go to <results>/runs"),
    resume: bool = typer.Option(False, help="continue from this config's last epoch checkpoint"),
    checkpoint_every_s: float = typer.Option(60.0, help="write a resume checkpoint after an epoch once this many "
                                                        "seconds passed since the last one (0 = every epoch)"),
    max_train_images: int = typer.Option(None, help="use only the first N training images (smoke runs)"),
    max_test_images: int = typer.Option(None, help="stratified subset of N test images (novelty smoke runs)"),
    eval_protocol: str = typer.Option("final", help="final | paper (also evaluate every 10 epochs)"),
    amp: str = typer.Option("none", help="mixed precision: none (float32, the authors') | bf16 | fp16 (CUDA)"),
    feature_cache_gb: float = typer.Option(None, help="GiB for the teacher-feature cache of training "
                                                      "(default: automatic; 0 = off)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train and evaluate one run; write its record (JSON) and print its metrics."""
    from rdbench.engine.losses import LOSSES
    from rdbench.engine.protocol import PROTOCOLS, get_protocol
    from rdbench.engine.run import run_one
    from rdbench.models.backbones import BACKBONES
    from rdbench.models.rd import BOTTLENECKS

    try:
        get_protocol(protocol)
    except ValueError as exc:
        _fail(str(exc))
    _check_choice("backbone", backbone, BACKBONES.names())
    _check_choice("bottleneck", bottleneck, BOTTLENECKS.names())
    _check_choice("loss", loss, LOSSES.names())
    del PROTOCOLS
    try:
        if data_root is None and protocol == "mvtec":
            _fail("--data-root is required for --protocol mvtec")
        config = RunConfig(protocol=protocol, data_root=str(data_root or ""), category=category, backbone=backbone,
                           weights=weights, bottleneck=bottleneck, layers=_parse_ints(layers, "--layers"),
                           loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                           seed=seed, device=device, max_train_images=max_train_images,
                           max_test_images=max_test_images, eval_protocol=eval_protocol, amp=amp,
                           feature_cache_gb=feature_cache_gb)
        _check_amp_here(amp, device)
    except ValueError as exc:
        _fail(str(exc))
    try:
        record = run_one(config, results, progress=progress, resume=resume, checkpoint_every_s=checkpoint_every_s)
    except OSError as exc:  # results folder unwritable: nothing could be recorded
        _fail(str(exc))
    if record["status"] != "ok":
        _fail(f"run failed: {record['error']}\nrecord: {record['record_path']}", code=1)
    typer.echo(_teacher_banner(record.get("teacher_weights")))
    typer.echo(json.dumps({k: None if v is None else round(v, 4) for k, v in record["metrics"].items()}))
    for name, why in record.get("metric_errors", {}).items():
        typer.secho(f"warning: {name} not computed: {why}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"record: {record['record_path']}")


@app.command("make-synthetic")
def make_synthetic_cmd(
    out: Path = typer.Option(..., help="output folder (MVTec AD layout)"),
    seed: int = typer.Option(0, help="same seed, same bytes"),
    categories: str = typer.Option("", help="comma-separated subset; empty = all"),
    n_train: int = typer.Option(40), n_test_good: int = typer.Option(10), n_test_bad: int = typer.Option(20),
    size: int = typer.Option(256, help="image side in pixels"),
) -> None:
    """Write a synthetic anomaly dataset (real texture photos + procedural objects, drawn defects)."""
    from rdbench.data.synthetic import make_synthetic

    cats = [c for c in categories.split(",") if c] or None
    try:
        summary = make_synthetic(out, seed=seed, categories=cats, n_train=n_train, n_test_good=n_test_good,
                                 n_test_bad=n_test_bad, size=size)
    except ValueError as exc:
        _fail(str(exc))
    for name, cat in summary.categories.items():
        defects = ", ".join(f"{d} {n}" for d, n in cat.defects.items())
        typer.echo(f"{name:<8} {cat.kind:<8} train {cat.n_train}, test good {cat.n_test_good}, {defects}")
    typer.echo(f"wrote {summary.root} in {summary.seconds:.1f} s (seed {summary.seed}, {summary.size} px)")


@app.command()
def parity(
    backbone: str = typer.Option("wide_resnet50_2"),
    seed: int = typer.Option(111),
    input_shape: str = typer.Option("2,3,256,256", help="N,C,H,W of the random input"),
    input_seed: int = typer.Option(0),
    official: Path = typer.Option(None, help="official fingerprints JSON to compare with (exit 1 on mismatch)"),
) -> None:
    """Print the model fingerprint (init, eval, 3 training steps) in the official format."""
    from rdbench.models.backbones import BACKBONES
    from rdbench.perf.parity import compare, fingerprint

    _check_choice("backbone", backbone, BACKBONES.names())
    shape = _parse_ints(input_shape, "--input-shape")
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        _fail(f"--input-shape must be N,3,H,W, got {input_shape!r}")
    if shape[2] % 32 or shape[3] % 32:
        _fail(f"H and W of --input-shape must be multiples of 32 (the bottleneck works at 1/32), got {input_shape!r}")
    records = None
    if official is not None:
        try:
            records = json.loads(official.read_text())
            ref = [r for r in records if r["backbone"] == backbone and r["seed"] == seed
                   and list(r["input_shape"]) == list(shape) and r["input_seed"] == input_seed]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _fail(f"cannot read official fingerprints {official}: {type(exc).__name__}: {exc}; expected the JSON "
                  "list of records of shared/parity/official_fingerprints.json")
    fp = fingerprint(backbone, seed=seed, input_shape=shape, input_seed=input_seed)
    typer.echo(json.dumps(fp, indent=1))
    if records is not None:
        if not ref:
            _fail(f"{official} holds no record for {backbone} seed {seed} shape {shape} input seed {input_seed}")
        bad = compare(fp, ref[0])
        for line in bad:
            typer.echo(f"MISMATCH {line}", err=True)
        typer.echo(f"parity with {official}: {'OK' if not bad else f'{len(bad)} mismatches'}", err=True)
        if bad:
            raise typer.Exit(1)


@app.command("list")
def list_cmd() -> None:
    """List registered backbones, protocols, bottlenecks and losses."""
    from rdbench.engine.losses import LOSSES
    from rdbench.engine.protocol import PROTOCOLS, get_protocol
    from rdbench.models.backbones import BACKBONES
    from rdbench.models.rd import BOTTLENECKS

    get_protocol("mvtec")
    typer.echo(f"backbones:   {', '.join(BACKBONES.names())}")
    typer.echo(f"protocols:   {', '.join(PROTOCOLS.names())}")
    typer.echo(f"bottlenecks: {', '.join(BOTTLENECKS.names())}")
    typer.echo(f"losses:      {', '.join(LOSSES.names())}")


@app.command()
def demo(
    out: Path = typer.Option(Path("results/demo"), help="folder for the synthetic data and the run records"),
    epochs: int = typer.Option(None, help="override the demo's epochs"),
    categories: str = typer.Option("", help="comma-separated synthetic categories (default brick,gravel,nut)"),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    progress: bool = typer.Option(True, help="show progress bars"),
) -> None:
    """Generate synthetic data, train and evaluate resnet18 on 3 categories, print a summary table."""
    import dataclasses

    from rdbench.cli.demo import DemoSettings, run_demo, summary_table
    from rdbench.data.synthetic import SYNTHETIC_CATEGORIES

    settings = DemoSettings()
    if epochs is not None:
        if epochs < 1:
            _fail(f"--epochs must be >= 1, got {epochs}")
        settings = dataclasses.replace(settings, epochs=epochs)
    if categories:
        cats = tuple(c for c in categories.split(",") if c)
        unknown = [c for c in cats if c not in SYNTHETIC_CATEGORIES]
        if unknown:
            _fail(f"unknown synthetic categories {', '.join(unknown)}; valid: {', '.join(SYNTHETIC_CATEGORIES)}")
        settings = dataclasses.replace(settings, categories=cats)
    try:
        records = run_demo(out, settings, progress=progress, device=device)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    typer.echo("")
    typer.echo(summary_table(records))
    typer.echo(f"records: {Path(out) / 'runs'}")
    typer.echo(f"report: {_render(Path(out), Path(out) / 'report', 'rdbench demo')}")
    if any(r["status"] != "ok" for r in records):
        raise typer.Exit(1)


@app.command()
def reproduce(
    table: str = typer.Option(..., help="paper table: 1..7, a comma-separated list, or all"),
    data_root: Path = typer.Option(None, help="MVTec AD root (Tables 1-3, 5-7)"),
    novelty_root: Path = typer.Option(None, help="root of MNIST/FashionMNIST/CIFAR-10/Caltech-256 (Table 4); "
                                                 "default: --data-root; FashionMNIST also found in "
                                                 "/usr/share/datasets/fashion-mnist"),
    results: Path = typer.Option(Path("results"), help="results folder; records go to <results>/runs"),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N"),
    executor: str = typer.Option("local", help="local (sequential; one process per GPU) | ray"),
    address: str = typer.Option(None, help="Ray cluster: auto | HOST:PORT (default: start a local one)"),
    seeds: int = typer.Option(1, help="runs per cell (seeds 111, 112, ...); mean and std are reported"),
    eval_protocol: str = typer.Option("final", help="final (last epoch) | paper (also every 10 epochs; "
                                                     "best epoch reported as optimistic)"),
    epochs: int = typer.Option(None, help="override the paper's 200 epochs"),
    limit_categories: str = typer.Option("", help="comma-separated categories/classes to cover"),
    weights: str = typer.Option("imagenet", help="teacher weights: imagenet | none | FILE"),
    max_train_images: int = typer.Option(None, help="train on the first N images only (smoke sweeps)"),
    max_test_images: int = typer.Option(None, help="stratified test subset (novelty smoke sweeps)"),
    batch_size: int = typer.Option(None, help="override the paper's batch size 16"),
    image_size: int = typer.Option(None, help="override the image size where a table does not vary it"),
    backbone: str = typer.Option(None, help="override the backbone where a table does not vary it (not Table 6)"),
    caltech_split_seed: int = typer.Option(0, help="Table 4, Caltech-256: seed of the train/test split"),
    caltech_test_fraction: float = typer.Option(0.2, help="Table 4, Caltech-256: share of the normal images tested"),
    dry_run: bool = typer.Option(False, help="list the runs and their estimated cost; train nothing"),
    amp: str = typer.Option("none", help="mixed precision: none (float32, the authors') | bf16 | fp16 (CUDA)"),
    feature_cache_gb: float = typer.Option(None, help="GiB for the teacher-feature cache of training "
                                                      "(default: automatic; 0 = off)"),
    progress: bool = typer.Option(True, help="progress bars"),
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
        results_records,
        save_sweep,
    )
    from rdbench.bench.tables import TABLES, GridOptions, all_tables, get_table

    try:
        tables = all_tables() if table == "all" else [get_table(k) for k in table.split(",") if k]
    except ValueError as exc:
        _fail(f"{exc} (or all)")
    if seeds < 1:
        _fail(f"--seeds must be >= 1, got {seeds}")
    if backbone is not None:
        from rdbench.models.backbones import BACKBONES

        _check_choice("backbone", backbone, BACKBONES.names())
    if epochs is not None and epochs < 1:
        _fail(f"--epochs must be >= 1, got {epochs}")
    if eval_protocol not in ("final", "paper"):
        _fail(f"--eval-protocol must be final or paper, got {eval_protocol!r}")
    _check_choice("amp", amp, AMP_CHOICES)
    if feature_cache_gb is not None and feature_cache_gb < 0:
        _fail(f"--feature-cache-gb must be >= 0 (0 = no cache), got {feature_cache_gb}")
    if executor == "local":  # Ray workers resolve the device on their own machines
        try:
            _check_amp_here(amp, device)
        except ValueError as exc:
            _fail(str(exc))
    del TABLES
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
            _fail(f"unknown categories {', '.join(unknown)} for table(s) {table}; valid: {', '.join(sorted(valid))}")
    try:
        planned = plan(tables, opts)
    except ValueError as exc:
        _fail(str(exc))
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
    needs_mvtec = any(p.config.protocol == "mvtec" for p in todo)
    if needs_mvtec and not data_root:
        _fail("--data-root (the MVTec AD folder) is required for these tables")
    problems = check_all_data([p.config for p in todo])
    if problems:
        _fail("data problems, nothing was trained:\n" + "\n\n".join(problems))
    typer.echo(f"{len(planned)} runs: {len(planned) - len(todo)} already recorded, running {len(todo)} "
               f"with the {executor} executor")
    save_sweep(results, tables, opts)

    def report(rec: dict) -> None:
        c = rec["config"]
        status = "ok" if rec["status"] == "ok" else f"FAILED: {rec['error']}"
        typer.echo(f"  {c['protocol']}/{c['category']} {c['backbone']} seed {c['seed']}: {status}")

    try:
        records = run_configs([p.config for p in todo], results, executor=executor, address=address,
                              progress=progress, on_record=report)
    except (OSError, ValueError, ImportError) as exc:
        _fail(str(exc))
    print_tables(tables, opts, results_records(results), echo=typer.echo)
    typer.echo(f"\nreport: {_render(results, results / 'report')}")
    failed = [r for r in records if r["status"] != "ok"]
    if failed:
        typer.secho(f"{len(failed)} run(s) failed; their records hold the errors", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@app.command()
def report(
    results: Path = typer.Option(Path("results"), help="results folder (records in <results>/runs)"),
    out: Path = typer.Option(Path("reports"), help="folder for index.html and tables/"),
    title: str = typer.Option(None, help="page title (default: the results folder's name)"),
) -> None:
    """Render the HTML report: paper tables vs ours, Fig. 5-7 style figures, runs, provenance (one file)."""
    if not results.is_dir():
        _fail(f"no results folder at {results}")
    typer.echo(f"report: {_render(results, out, title)}")


def _render(results: Path, out: Path, title: str | None = None) -> Path:
    from rdbench.report import render_report

    try:
        return render_report(results, out, title=title)
    except OSError as exc:
        _fail(f"cannot write the report to {out}: {exc}")
        raise


baseline_app = typer.Typer(no_args_is_help=True, help="Regression baselines from run records.")
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("save")
def baseline_save(
    results: Path = typer.Option(..., help="results folder whose records form the baseline"),
    out: Path = typer.Option(..., help="baseline JSON to write (commit it next to the code)"),
    floor: float = typer.Option(0.01, help="absolute tolerance floor stored in the baseline (0.01 = 1 point)"),
) -> None:
    """Store per cell (settings without seed) and metric the mean and spread over seeds."""
    from rdbench.bench.baseline import save_baseline

    try:
        b = save_baseline(results, out, floor=floor)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(f"baseline of {len(b['cells'])} cells written to {out}")


@app.command()
def check(
    baseline: Path = typer.Option(..., help="baseline JSON (rdbench baseline save)"),
    results: Path = typer.Option(..., help="results folder with the fresh records"),
    tolerance: float = typer.Option(None, help="absolute tolerance for every metric (default: max(floor, "
                                               "3 x the baseline's seed std))"),
    floor: float = typer.Option(None, help="override the baseline's absolute floor"),
    verbose: bool = typer.Option(False, help="list every metric, not only the problems"),
) -> None:
    """Compare fresh records with a baseline; exit 1 on a regression beyond the tolerance or a missing cell."""
    from rdbench.bench.baseline import check as run_check
    from rdbench.bench.baseline import format_rows

    try:
        rows = run_check(baseline, results, tolerance=tolerance, floor=floor)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    bad = [r for r in rows if r.status in ("REGRESSION", "MISSING")]
    typer.echo(format_rows(rows, only_problems=not verbose and bool(bad)))
    counts = {s: sum(r.status == s for r in rows) for s in ("ok", "improved", "REGRESSION", "MISSING")}
    typer.echo(", ".join(f"{n} {s}" for s, n in counts.items()))
    if bad:
        raise typer.Exit(1)


@app.command("profile")
def profile_cmd(
    backbone: str = typer.Option("wide_resnet50_2", help="teacher backbone"),
    image_size: int = typer.Option(256, help="input size (multiple of 32)"),
    batch_size: int = typer.Option(8, help="batch size of the throughput and training figures"),
    device: str = typer.Option("cpu", help="cpu | cuda | cuda:N"),
    weights: str = typer.Option("none", help="teacher weights (timings do not depend on them)"),
    repeats: int = typer.Option(None, help="timed repeats per figure after warm-up; the median is reported "
                                           "(default 3 on CPU, 20 on CUDA)"),
    reference: bool = typer.Option(True, help="also measure the authors' procedure and print ratios"),
    train: bool = typer.Option(True, help="measure training throughput (fast: feature cache; reference: "
                                          "the authors' loop)"),
    memory: bool = typer.Option(True, help="measure peak memory (CPU: in fresh worker processes)"),
    amp: str = typer.Option("none", help="none | bf16 | fp16 (CUDA): autocast of the fast path; its effect on "
                                         "the maps is reported"),
    compile: bool = typer.Option(False, "--compile", help="torch.compile the fast path's networks (compiled "
                                                          "during warm-up; no prepacked CPU convolutions)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    results: Path = typer.Option(None, help="also save the result (with provenance) to <results>/profiles, where "
                                            "rdbench report shows it beside Table 3"),
) -> None:
    """Latency (batch 1), throughput, peak and parameter memory, training throughput; fast vs reference."""
    from rdbench.models.backbones import BACKBONES
    from rdbench.perf.profile import format_profile, profile

    _check_choice("backbone", backbone, BACKBONES.names())
    _check_choice("amp", amp, AMP_CHOICES)
    if image_size % 32 or image_size < 32:
        _fail(f"--image-size must be a multiple of 32, got {image_size}")
    if batch_size < 1:
        _fail(f"--batch-size must be >= 1, got {batch_size}")
    if repeats is not None and repeats < 1:
        _fail(f"--repeats must be >= 1, got {repeats}")
    if results is not None:  # before minutes of measuring, not after
        from rdbench.records.store import check_writable

        try:
            check_writable(results / "profiles")
        except OSError as exc:
            _fail(str(exc))
    try:
        from rdbench.engine.device import check_amp, resolve_device

        check_amp(amp, resolve_device(device))
        result = profile(backbone, image_size=image_size, batch_size=batch_size, device=device, weights=weights,
                         repeats=repeats, reference=reference, train=train, memory=memory, amp=amp,
                         compile=compile)
    except ValueError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result, indent=1) if as_json else format_profile(result))
    if results is not None:
        from rdbench.perf.profile import save_profile

        try:
            path = save_profile(result, results)
        except OSError as exc:
            _fail(f"{exc} (the profile is printed above)")
        typer.echo(f"saved: {path}", err=as_json)
