"""What bf16 autocast does to accuracy and speed, against the seed spread of float32.

    python tests/benchmarks/bf16_effect.py [--seeds 111,112,113] [--workdir DIR] [--json OUT]

Two protocols, each run for every seed in float32 and under ``--amp bf16`` (``RunConfig.amp``: the student
autocast in training, both networks in evaluation; loss, per-layer maps, sums and smoothing stay float32/64):

* the demo: ``rdbench demo``'s settings (synthetic brick, gravel, nut; resnet18, random teacher, 128 px, 30 epochs,
  batch 8), data generated into the work folder;
* the small FashionMNIST protocol of the committed baseline (classes 1 and 8, resnet18, random teacher, 32 px,
  300 train / 600 test images, 3 epochs), Debian's files.

For each metric and cell it prints the float32 mean and spread over seeds (max - min), the bf16 mean, the change
and whether the change lies within the float32 spread; and the ratio of training and evaluation images/s (bf16 /
float32, from the records' timings, medians over the runs). The runs alternate float32 / bf16 per seed so that
load on a shared machine falls on both. bf16 becomes a default only where the change is within the spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from rdbench.cli.demo import DemoSettings  # noqa: E402
from rdbench.config import RunConfig  # noqa: E402
from rdbench.data.synthetic import make_synthetic  # noqa: E402
from rdbench.engine.run import run_one  # noqa: E402

DEMO_METRICS = ("image_auroc", "pixel_auroc", "pro_rd4ad")
NOVELTY_METRICS = ("auroc",)


def demo_configs(data_root: Path, seed: int, amp: str) -> list[RunConfig]:
    s = DemoSettings()
    return [RunConfig(protocol="mvtec", data_root=str(data_root), category=c, backbone=s.backbone, weights="none",
                      epochs=s.epochs, batch_size=s.batch_size, image_size=s.image_size, seed=seed, device="cpu",
                      amp=amp, extra={"demo": True, "data_seed": s.data_seed}) for c in s.categories]


def fashion_configs(seed: int, amp: str) -> list[RunConfig]:
    return [RunConfig(protocol="fashionmnist", category=c, backbone="resnet18", weights="none", epochs=3,
                      batch_size=16, image_size=32, max_train_images=300, max_test_images=600, seed=seed,
                      device="cpu", amp=amp) for c in ("1", "8")]


def summarise(rows: list[dict], metrics: tuple[str, ...]) -> list[dict]:
    out = []
    for cell in sorted({r["cell"] for r in rows}):
        for m in metrics:
            f32 = [r["metrics"][m] for r in rows if r["cell"] == cell and r["amp"] == "none"]
            b16 = [r["metrics"][m] for r in rows if r["cell"] == cell and r["amp"] == "bf16"]
            if not f32 or not b16 or None in f32 + b16:
                continue
            spread = max(f32) - min(f32)
            change = statistics.mean(b16) - statistics.mean(f32)
            out.append({"cell": cell, "metric": m, "float32": f32, "bf16": b16, "float32_mean": statistics.mean(f32),
                        "bf16_mean": statistics.mean(b16), "float32_spread": spread, "change": change,
                        "within_spread": abs(change) <= spread})
    return out


def speed(rows: list[dict]) -> dict:
    def med(amp: str, key: str) -> float:
        return statistics.median(r["timings"][key] for r in rows if r["amp"] == amp and r["timings"].get(key))

    return {key: {"float32": med("none", key), "bf16": med("bf16", key), "ratio": med("bf16", key) / med("none", key)}
            for key in ("train_images_per_s", "eval_images_per_s")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="111,112,113")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/rdbench-bf16"))
    p.add_argument("--protocols", default="fashionmnist,demo")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    from rdbench.records.provenance import bf16_native

    if not bf16_native("cpu"):
        p.error("this CPU only emulates bfloat16 (about 120x slower than float32): the speed figures would measure "
                "the emulation; run this on an AVX512/AMX CPU")
    seeds = [int(s) for s in args.seeds.split(",")]
    s = DemoSettings()
    data_root = args.workdir / "data"
    if "demo" in args.protocols:
        make_synthetic(data_root, seed=s.data_seed, categories=s.categories, n_train=s.n_train,
                       n_test_good=s.n_test_good, n_test_bad=s.n_test_bad)
    results: dict = {}
    for proto in args.protocols.split(","):
        rows = []
        for seed in seeds:
            for amp in ("none", "bf16"):
                configs = demo_configs(data_root, seed, amp) if proto == "demo" else fashion_configs(seed, amp)
                for cfg in configs:
                    rec = run_one(cfg, args.workdir / f"{proto}-{amp}", progress=False, keep_model=False)
                    if not rec.ok:
                        raise SystemExit(f"{proto} {cfg.category} seed {seed} amp {amp} failed: {rec.error}")
                    rows.append({"cell": cfg.category, "seed": seed, "amp": amp, "metrics": rec.metrics,
                                 "timings": rec.timings})
                    print(f"{proto} {cfg.category} seed {seed} {amp:>4}: "
                          + ", ".join(f"{m} {rec.metrics[m]:.4f}" for m in
                                      (DEMO_METRICS if proto == "demo" else NOVELTY_METRICS))
                          + f"; train {rec.timings['train_images_per_s']:.1f} images/s", flush=True)
        summary = summarise(rows, DEMO_METRICS if proto == "demo" else NOVELTY_METRICS)
        sp = speed(rows)
        results[proto] = {"rows": rows, "summary": summary, "speed": sp}
        print(f"\n{proto}: bf16 vs float32 over seeds {seeds}")
        for r in summary:
            print(f"  {r['cell']:<8} {r['metric']:<12} float32 {r['float32_mean']:.4f} "
                  f"(spread {r['float32_spread']:.4f})  bf16 {r['bf16_mean']:.4f}  change {r['change']:+.4f}  "
                  f"{'within' if r['within_spread'] else 'OUTSIDE'} the seed spread")
        for key, v in sp.items():
            print(f"  {key}: float32 {v['float32']:.3g}, bf16 {v['bf16']:.3g} -> {v['ratio']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
