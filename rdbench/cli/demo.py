"""``rdbench demo``: the whole pipeline on data rdbench generates itself, in a few minutes on a CPU."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rdbench.config import RunConfig
from rdbench.models.backbones import BACKBONES, imagenet_available, imagenet_cache_path
from rdbench.records.schema import RunRecord


@dataclass(frozen=True)
class DemoSettings:
    # Two textures cut from real photos and one procedural object: both kinds of MVTec category.
    categories: tuple[str, ...] = ("brick", "gravel", "nut")
    backbone: str = "resnet18"  # the cheapest registered teacher; the paper's is wide_resnet50_2
    # 256 px / 200 epochs in the paper. Measured on 2 cores with a random teacher (image / pixel AUROC,
    # mean of 3 categories): 128 px x 20 epochs 84.8 / 93.1 in 117 s; x 40 epochs 94.5 / 95.2 in 211 s;
    # 256 px x 8 epochs 84.2 / 83.4 in 129 s. 128 px x 30 epochs stays well under 5 minutes.
    image_size: int = 128
    epochs: int = 30
    batch_size: int = 8  # 16 in the paper; smaller batches = more Adam steps for 40 train images
    n_train: int = 40
    n_test_good: int = 10
    n_test_bad: int = 20
    data_seed: int = 0
    seed: int = 111
    # rdbench profile of the demo's model (fast path vs the authors' procedure) for the report's Speed and
    # memory section: about 20 s at 128 px with resnet18
    profile: bool = True


def teacher_weights(backbone: str) -> str:
    return "imagenet" if imagenet_available(backbone) else "none"


def run_demo(out: Path, settings: DemoSettings = DemoSettings(), progress: bool = True,
             device: str = "auto") -> list[dict]:
    from rdbench.data.synthetic import make_synthetic
    from rdbench.engine.run import run_one

    out = Path(out)
    data_root = out / "data"
    weights = teacher_weights(settings.backbone)
    if weights == "none":
        path = imagenet_cache_path(BACKBONES.get(settings.backbone))
        print("=" * 78, file=sys.stderr)
        print(f"RANDOM TEACHER: no ImageNet weights for {settings.backbone} at\n  {path}\n"
              "The demo still finds the synthetic defects, but numbers are far below the paper's.\n"
              "Place the torchvision file there (see README) for the real teacher.", file=sys.stderr)
        print("=" * 78, file=sys.stderr)
    summary = make_synthetic(data_root, seed=settings.data_seed, categories=settings.categories,
                             n_train=settings.n_train, n_test_good=settings.n_test_good,
                             n_test_bad=settings.n_test_bad)
    print(f"synthetic data: {data_root} ({len(summary.categories)} categories, {summary.seconds:.1f} s)")
    records = []
    for category in settings.categories:
        config = RunConfig(protocol="mvtec", data_root=str(data_root), category=category,
                           backbone=settings.backbone, weights=weights, epochs=settings.epochs,
                           batch_size=settings.batch_size, image_size=settings.image_size, seed=settings.seed,
                           device=device, extra={"demo": True, "data_seed": settings.data_seed})
        rec = run_one(config, out, progress=progress, keep_model=False)
        records.append(rec)
        status = "ok" if rec.ok else f"FAILED: {rec.error}"
        print(f"  {category}: {status} ({rec.wall_s:.0f} s)")
    if settings.profile:
        _profile(out, settings, weights, device)
    return records


def _profile(out: Path, settings: DemoSettings, weights: str, device: str) -> None:
    from rdbench.perf.profile import profile, save_profile

    try:
        result = profile(settings.backbone, image_size=settings.image_size, batch_size=8, device=device,
                         weights=weights, repeats=3, train_epochs=3)
        path = save_profile(result, out)
    except Exception as exc:  # the runs are recorded already; a profile that fails must not cost them
        print(f"  profile: FAILED ({type(exc).__name__}: {exc})", file=sys.stderr)
        return
    r = result["ratios"]
    print(f"  profile: latency {r['latency_ms']['value']:.2f}x, training {r['train_throughput_ips']['value']:.2f}x "
          f"images/s, peak memory {r['peak_memory_mb']['value']:.2f}x of the authors' procedure ({path.name})")


def _pct(value: float | None) -> str:
    return f"{'n/a':>11}" if value is None else f"{100 * value:>11.1f}"


def summary_table(records: list[RunRecord]) -> str:
    """A plain-text table of the demo's metrics, percent like the paper's tables."""
    cols = ("image_auroc", "pixel_auroc", "pro_mvtec", "pro_rd4ad")
    lines = [f"{'category':<10} {'teacher':<8} " + " ".join(f"{c:>11}" for c in cols)]
    for r in records:
        cat = r.config.category
        teacher = (r.teacher_weights or {}).get("kind", "?")
        if not r.ok:
            lines.append(f"{cat:<10} {teacher:<8} failed: {r.error}")
            continue
        lines.append(f"{cat:<10} {teacher:<8} " + " ".join(_pct(r.metric(c)) for c in cols))
    ok = [r for r in records if r.ok]
    if ok:
        means = []
        for c in cols:
            vals = [r.metric(c) for r in ok if r.metric(c) is not None]
            means.append(sum(vals) / len(vals) if vals else None)
        lines.append(f"{'mean':<10} {'':<8} " + " ".join(_pct(m) for m in means))
    return "\n".join(lines)
