"""Commands that measure the model rather than train it: ``profile`` (speed, memory) and ``parity``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rdbench.cli.common import Amp, Backbone, choice, fail, parse_ints

Opt = typer.Option


def profile(
    backbone: Backbone = "wide_resnet50_2",
    image_size: Annotated[int, Opt(help="input size (multiple of 32)")] = 256,
    batch_size: Annotated[int, Opt(help="batch size of the throughput and training figures")] = 8,
    device: Annotated[str, Opt(help="cpu | cuda | cuda:N")] = "cpu",
    weights: Annotated[str, Opt(help="teacher weights (timings do not depend on them)")] = "none",
    repeats: Annotated[int, Opt(help="timed repeats per figure after warm-up; the median is reported (default 3 "
                                     "on CPU, 20 on CUDA)", show_default=False)] = None,
    reference: Annotated[bool, Opt(help="also measure the authors' procedure and print ratios")] = True,
    train: Annotated[bool, Opt(help="measure training throughput (fast: feature cache; reference: the authors' "
                                    "loop)")] = True,
    memory: Annotated[bool, Opt(help="measure peak memory (CPU: in fresh worker processes)")] = True,
    amp: Amp = "none",
    compile: Annotated[bool, Opt("--compile", help="torch.compile the fast path's networks (compiled during "
                                                   "warm-up; no prepacked CPU convolutions)")] = False,
    as_json: Annotated[bool, Opt("--json", help="print the result as JSON")] = False,
    results: Annotated[Path, Opt(help="also save the result (with provenance) to <results>/profiles, where rdbench "
                                      "report shows it beside Table 3", show_default=False)] = None,
) -> None:
    """Latency (batch 1), throughput, peak and parameter memory, training throughput; fast vs reference."""
    from rdbench.engine.device import check_amp, resolve_device
    from rdbench.perf.profile import format_profile, save_profile
    from rdbench.perf.profile import profile as measure

    if image_size % 32 or image_size < 32:
        fail(f"--image-size must be a multiple of 32, got {image_size}")
    if batch_size < 1:
        fail(f"--batch-size must be >= 1, got {batch_size}")
    if repeats is not None and repeats < 1:
        fail(f"--repeats must be >= 1, got {repeats}")
    if results is not None:  # before minutes of measuring, not after
        from rdbench.records.store import check_writable

        try:
            check_writable(results / "profiles")
        except OSError as exc:
            fail(str(exc))
    try:
        check_amp(amp, resolve_device(device))
        result = measure(backbone, image_size=image_size, batch_size=batch_size, device=device, weights=weights,
                         repeats=repeats, reference=reference, train=train, memory=memory, amp=amp, compile=compile)
    except ValueError as exc:
        fail(str(exc))
    typer.echo(json.dumps(result, indent=1) if as_json else format_profile(result))
    if results is not None:
        try:
            path = save_profile(result, results)
        except OSError as exc:
            fail(f"{exc} (the profile is printed above)")
        typer.echo(f"saved: {path}", err=as_json)


def parity(
    backbone: Backbone = "wide_resnet50_2",
    seed: int = 111,
    input_shape: Annotated[str, Opt(help="N,C,H,W of the random input")] = "2,3,256,256",
    input_seed: int = 0,
    official: Annotated[Path, Opt(help="official fingerprints JSON to compare with (exit 1 on mismatch)",
                                  show_default=False)] = None,
    dtype: Annotated[str, choice("dtype", lambda: ("float32", "float64"), "precision of the eval block and the "
                                 "training steps: float64 casts the float32-built model (the same initial weights) "
                                 "and input, where the steps are no longer chaotic")] = "float32",
) -> None:
    """Print the model fingerprint (init, eval, 3 training steps) in the official format."""
    from rdbench.perf.parity import compare, fingerprint

    shape = parse_ints(input_shape, "--input-shape")
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        fail(f"--input-shape must be N,3,H,W, got {input_shape!r}")
    if shape[2] % 32 or shape[3] % 32:
        fail(f"H and W of --input-shape must be multiples of 32 (the bottleneck works at 1/32), got {input_shape!r}")
    records = None
    if official is not None:
        try:
            records = json.loads(official.read_text())
            ref = [r for r in records if r["backbone"] == backbone and r["seed"] == seed
                   and list(r["input_shape"]) == list(shape) and r["input_seed"] == input_seed
                   and r.get("dtype", "float32") == dtype]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            fail(f"cannot read official fingerprints {official}: {type(exc).__name__}: {exc}; expected the JSON "
                 "list of fingerprint records of tests/data/official_fingerprints.json")
    fp = fingerprint(backbone, seed=seed, input_shape=shape, input_seed=input_seed, dtype=dtype)
    typer.echo(json.dumps(fp, indent=1))
    if records is not None:
        if not ref:
            fail(f"{official} holds no {dtype} record for {backbone} seed {seed} shape {shape} input seed "
                 f"{input_seed}")
        bad = compare(fp, ref[0])
        for line in bad:
            typer.echo(f"MISMATCH {line}", err=True)
        typer.echo(f"parity with {official}: {'OK' if not bad else f'{len(bad)} mismatches'}", err=True)
        if bad:
            raise typer.Exit(1)
