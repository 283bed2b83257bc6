"""What the extended metrics and their intervals cost on one realistic category.

    python tests/benchmarks/bootstrap_cost.py [--images 100] [--size 256] [--anomalous 0.3] [--resamples 1000]
                                              [--rounds 3] [--mask-size 0]

The category is benchutil's ``category_masks_maps`` (blobby defects of 0.2-4 % of the image, smooth-noise
maps with a bump on them, float32). Measured, median of ``--rounds``: the exact pixel metrics (AP and
F1-max from one sort, in float32 and float64; pixel AUROC beside them), ``summarize`` (pixel histograms,
with and without the per-image RD4AD PRO), the intervals of all metrics from ``--resamples`` stratified
resamples, a paired difference of two runs, DeLong's test, the sidecar's size; the target is under 2 s
per category for all intervals (summary included). ``--mask-size S`` also times MVTec's PRO with the
masks at S x S (maps upsampled bilinearly to them) against the same at map resolution.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from benchutil import category_masks_maps

from rdbench.metrics import (
    bootstrap_intervals,
    delong_test,
    paired_bootstrap_diff,
    pixel_ap_f1_max,
    pixel_auroc,
    pro_auc,
    summarize,
)


def median_s(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(statistics.median(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--anomalous", type=float, default=0.3, help="share of anomalous test images")
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--mask-size", type=int, default=0, help="also time PRO at this mask size (0: skip)")
    a = ap.parse_args()
    n_normal = a.images - round(a.anomalous * a.images)
    labels, masks, maps = category_masks_maps(0, a.images, n_normal, a.size)
    scores = maps.reshape(a.images, -1).max(axis=1)
    r, b = a.rounds, a.resamples
    out: dict = {"images": a.images, "size": a.size, "anomalous_images": int(labels.sum()),
                 "anomalous_pixels": int(masks.sum()), "resamples": b}

    maps64 = maps.astype(np.float64)
    out["exact_s"] = {"pixel_ap_f1_max_float32": median_s(lambda: pixel_ap_f1_max(masks, maps), r),
                      "pixel_ap_f1_max_float64": median_s(lambda: pixel_ap_f1_max(masks, maps64), r),
                      "pixel_auroc_float32": median_s(lambda: pixel_auroc(masks, maps), r)}
    out["summarize_s"] = {"without_pro": median_s(lambda: summarize(labels, scores, masks, maps,
                                                                     pro_fpr_limit=None), r),
                          "with_pro": median_s(lambda: summarize(labels, scores, masks, maps), r)}
    s = summarize(labels, scores, masks, maps)
    other = summarize(labels, scores + 0.01 * labels, masks, maps + 0.05 * masks.astype(np.float32))
    out["bins"] = int(s.tied.size)
    intervals_s = median_s(lambda: bootstrap_intervals(s, b), r)
    out["intervals_s"] = {"all_metrics": intervals_s,
                          "image_metrics": median_s(lambda: bootstrap_intervals(
                              s, b, metrics=["image_auroc", "image_ap", "image_f1_max"]), r),
                          "paired_diff_all_metrics": median_s(lambda: paired_bootstrap_diff(s, other, b), r),
                          "delong": median_s(lambda: delong_test(labels, scores, other.image_scores), r)}
    out["per_category_total_s"] = round(out["summarize_s"]["with_pro"] + intervals_s, 3)
    out["target_s"] = 2.0
    out["met"] = out["per_category_total_s"] < 2.0
    with tempfile.TemporaryDirectory() as d:
        s.to_npz(Path(d) / "s.npz")
        out["sidecar_kB"] = round((Path(d) / "s.npz").stat().st_size / 1e3, 1)
    out["intervals"] = {k: [round(x, 4) for x in v] for k, v in bootstrap_intervals(s, b).items()}
    if a.mask_size:
        big = [_upsample_mask(m, a.mask_size) for m in masks]
        out["pro_mvtec_s"] = {"map_resolution": median_s(lambda: pro_auc(masks, maps), 1),
                              f"mask_resolution_{a.mask_size}": median_s(
                                  lambda: pro_auc(big, maps, resolution="mask"), 1)}
    print(json.dumps(out, indent=1))


def _upsample_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """A full-size mask whose downscale is ``mask``: nearest-neighbour upsampling."""
    idx = (np.arange(size) * mask.shape[0]) // size
    return mask[idx][:, idx]


if __name__ == "__main__":
    main()
