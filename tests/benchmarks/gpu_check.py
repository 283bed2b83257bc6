"""The issue's GPU measurements as one prepared script, for a session that is lent a GPU:

1. One full MVTec-sized category (280 training images like carpet, 120 test images, 256 px, 200 epochs,
   wide_resnet50_2, batch 16) trained and evaluated by ``rdbench.engine.run.run_one`` on a synthetic category,
   wall clock measured around it. Goal: under 2 minutes on an H200.
2. ``rdbench profile`` of wide_resnet50_2 at 256 px on the device, in the variants worth comparing there
   (float32 as the authors; channels_last; bf16 autocast + channels_last, eager and torch.compile'd), with the
   reference (the authors' batch-1 procedure) measured once beside the float32 variant. Goal: >= 2000
   images/s on an H200.

Writes ``<out>/gpu_check.json`` (every profile result and the run's record summary) and prints a summary.
The weights are random (``none``): the cost does not depend on them. Usage on the device machine::

    python tests/benchmarks/gpu_check.py --device cuda --out "$OUT"

The category run comes first, then the profiles while ``--budget-s`` lasts, so that one 600 s command keeps
the figures that matter most. ``--quick`` shrinks everything (a CPU smoke run of the script itself:
tests/test_gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from rdbench.config import RunConfig
from rdbench.data.synthetic import make_synthetic
from rdbench.engine.run import run_one
from rdbench.perf.profile import format_profile, profile

# run_one asks cuBLAS for deterministic kernels; the setting must be in place before CUDA starts
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

VARIANTS = {  # name -> profile() options, in the order they run
    "float32": {},
    "bf16_channels_last": {"channels_last": True, "amp": "bf16"},
    "float32_channels_last": {"channels_last": True},
    "bf16_channels_last_compiled": {"channels_last": True, "amp": "bf16", "compile": True},  # "if it pays"
}
QUICK_SKIPS = ("bf16_channels_last_compiled",)  # compiling takes ~20 s on a CPU; tested on its own


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=Path("."))
    ap.add_argument("--batch-size", type=int, default=64, help="throughput batch size of the profiles")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="profile variants to run, in this order")
    ap.add_argument("--budget-s", type=float, default=480.0,
                    help="start no further profile once this many seconds have passed (the device's command limit "
                         "is 600 s; the JSON written so far is kept)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of this script")
    args = ap.parse_args(argv)
    unknown = [v for v in args.variants.split(",") if v and v not in VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; valid: {', '.join(VARIANTS)}")
    t_start = time.perf_counter()
    backbone, size, epochs, n_train, n_good, n_bad, batch = "wide_resnet50_2", 256, 200, 280, 40, 80, args.batch_size
    repeats = None
    if args.quick:
        backbone, size, epochs, n_train, n_good, n_bad, batch, repeats = "resnet18", 64, 2, 4, 2, 2, 2, 1
    result: dict = {"device": args.device, "torch": torch.__version__, "profiles": {}, "category_run": None}
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every step: a run cut short by the device's time limit keeps what it measured
        (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1))

    # 1. the 200-epoch category first: it is the figure that must not be lost to the time limit
    with tempfile.TemporaryDirectory() as tmp:
        data = make_synthetic(Path(tmp) / "data", categories=["brick"], n_train=n_train, n_test_good=n_good,
                              n_test_bad=n_bad, size=size)
        cfg = RunConfig(protocol="mvtec", data_root=str(data.root), category="brick", backbone=backbone,
                        weights="none", epochs=epochs, image_size=size, device=args.device)
        t0 = time.perf_counter()
        rec = run_one(cfg, Path(tmp) / "results", progress=False, keep_model=False)
        wall = time.perf_counter() - t0
    result["category_run"] = {
        "wall_s": wall, "status": rec.status, "error": rec.error, "metrics": rec.metrics,
        "timings": rec.timings, "counts": rec.counts, "config": cfg.to_dict(),
        "environment": rec.environment,
        "description": f"run_one: {epochs} epochs of {n_train} synthetic {size}px images + evaluation of "
                       f"{n_good + n_bad} test images, {backbone}, batch {cfg.batch_size}, random teacher; "
                       f"wall clock including data loading, model building and the record"}
    save()
    t = rec.timings
    print(f"== category run: {rec.status} in {wall:.1f} s (train {t.get('train_s', float('nan')):.1f} s, "
          f"eval {t.get('eval_s', float('nan')):.1f} s), feature cache "
          f"{(t.get('feature_cache') or {}).get('active')}" + (f": {rec.error}" if rec.error else ""),
          flush=True)

    # 2. the profiles, cheapest and most important first
    for name in [v for v in args.variants.split(",") if v]:
        if args.quick and name in QUICK_SKIPS:
            continue
        if time.perf_counter() - t_start > args.budget_s:
            result["profiles"][name] = {"error": f"skipped: the {args.budget_s:.0f} s budget was spent"}
            save()
            continue
        t0 = time.perf_counter()
        try:
            r = profile(backbone, image_size=size, batch_size=batch, device=args.device, repeats=repeats,
                        reference=name == "float32", memory=not args.quick, train=name != "float32_channels_last",
                        train_epochs=3 if args.quick else None, **VARIANTS[name])
            result["profiles"][name] = r
            print(f"== profile {name} ({time.perf_counter() - t0:.0f} s)\n{format_profile(r)}\n", flush=True)
        except Exception as exc:  # one variant failing (e.g. no bf16 on an old GPU) must not lose the others
            result["profiles"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"== profile {name} FAILED: {exc}", flush=True)
        save()
    for name, r in result["profiles"].items():
        if "fast" in r:
            print(f"   {name}: {r['fast']['throughput_ips']['value']:.0f} images/s at batch {batch}")
    return result


if __name__ == "__main__":
    sys.exit(0 if main()["category_run"]["status"] == "ok" else 1)
