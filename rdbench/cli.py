"""The ``rdbench`` command line (typer)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from rdbench.config import RunConfig

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Benchmark and reproducibility harness for RD4AD (Reverse Distillation, CVPR 2022).")


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


def _teacher_banner(weights_info: dict | None) -> str:
    if weights_info and weights_info.get("kind") == "random":
        return "RANDOM TEACHER (no ImageNet weights): numbers are not comparable with the paper"
    return f"teacher weights: {weights_info.get('name') if weights_info else 'unknown'}"


@app.command()
def run(
    data_root: Path = typer.Option(..., help="dataset root (MVTec AD layout for --protocol mvtec)"),
    category: str = typer.Option(..., help="category folder under the data root"),
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
    max_train_images: int = typer.Option(None, help="use only the first N training images (smoke runs)"),
    progress: bool = typer.Option(True, help="show a progress bar"),
) -> None:
    """Train and evaluate one run; write its record (JSON) and print its metrics."""
    from rdbench.losses import LOSSES
    from rdbench.models.backbones import BACKBONES
    from rdbench.models.rd import BOTTLENECKS
    from rdbench.protocol import PROTOCOLS, get_protocol
    from rdbench.run import run_one

    try:
        get_protocol(protocol)
    except ValueError as exc:
        _fail(str(exc))
    _check_choice("backbone", backbone, BACKBONES.names())
    _check_choice("bottleneck", bottleneck, BOTTLENECKS)
    _check_choice("loss", loss, LOSSES)
    del PROTOCOLS
    try:
        config = RunConfig(protocol=protocol, data_root=str(data_root), category=category, backbone=backbone,
                           weights=weights, bottleneck=bottleneck, layers=_parse_ints(layers, "--layers"),
                           loss=loss, epochs=epochs, batch_size=batch_size, lr=lr, image_size=image_size,
                           seed=seed, device=device, max_train_images=max_train_images)
    except ValueError as exc:
        _fail(str(exc))
    try:
        record = run_one(config, results, progress=progress, resume=resume)
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
    from rdbench.parity import compare, fingerprint

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
    from rdbench.losses import LOSSES
    from rdbench.models.backbones import BACKBONES
    from rdbench.models.rd import BOTTLENECKS
    from rdbench.protocol import PROTOCOLS, get_protocol

    get_protocol("mvtec")
    typer.echo(f"backbones:   {', '.join(BACKBONES.names())}")
    typer.echo(f"protocols:   {', '.join(PROTOCOLS.names())}")
    typer.echo(f"bottlenecks: {', '.join(BOTTLENECKS)}")
    typer.echo(f"losses:      {', '.join(LOSSES)}")


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

    from rdbench.demo import DemoSettings, run_demo, summary_table

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
    if any(r["status"] != "ok" for r in records):
        raise typer.Exit(1)
