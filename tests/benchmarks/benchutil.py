"""Helpers of the speed benchmarks (see conftest.py): synthetic category data and paired timing."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from scipy import ndimage

QUICK = os.environ.get("RDBENCH_BENCH_QUICK") == "1"
STRICT = os.environ.get("RDBENCH_BENCH_STRICT") == "1"
RESULTS: list[dict] = []


def rounds(n: int) -> int:
    return 1 if QUICK else n


# ------------------------------------------------------------------------------------------- synthetic data
N_IMAGES, N_NORMAL, SIZE = 100, 30, 256


def category_masks_maps(seed: int = 0, n: int = N_IMAGES, n_normal: int = N_NORMAL, size: int = SIZE):
    """An MVTec-sized test category: n images, the first n_normal without defect, the others with 1-3
    blobby defect regions (0.2-4 % of the image); maps are smooth noise plus a bump on the defects, so
    the metrics are far from trivial (image AUROC 0.68, pixel AUROC 0.86, PRO 0.63).
    Returns (labels, masks uint8, maps float32)."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_normal, n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(20, size - 20, 2)
            ry, rx = rng.uniform(4, 22, 2)
            masks[i] |= (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 6, 6))
    bump = ndimage.gaussian_filter(masks.astype(np.float64), (0, 4, 4)) * rng.uniform(0.02, 0.2, (n, 1, 1))
    maps = (0.3 + noise + bump).astype(np.float32)
    labels = (masks.reshape(n, -1).max(axis=1) > 0).astype(int)
    return labels, masks, maps


class Item(NamedTuple):  # the fields of rdbench.data.mvtec.TestItem
    image: torch.Tensor
    mask: torch.Tensor
    label: int
    defect: str
    path: str


class InMemoryTestSet(torch.utils.data.Dataset):
    """Random images with the masks of category_masks_maps: the cost of a category's evaluation without
    the cost of decoding PNGs (the same for both paths)."""

    def __init__(self, seed: int = 0, n: int = N_IMAGES, size: int = SIZE):
        labels, masks, _ = category_masks_maps(seed, n, size=size)
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=g)
        self.masks = torch.from_numpy(masks).float()[:, None]
        self.labels = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> Item:
        label = self.labels[i]
        return Item(self.images[i], self.masks[i], label, "defect" if label else "good", f"img{i:03d}.png")


# ---------------------------------------------------------------------------------------------- measuring
def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def paired(benchmark, name: str, fast: Callable[[], object], reference: Callable[[], object], n_rounds: int,
           target: float, higher_is_better: bool = True, warmup: int = 1, fast_per_round: float = 1.0,
           ref_per_round: float = 1.0, unit: str = "speed-up") -> dict:
    """Time ``fast`` with pytest-benchmark and ``reference`` in its setup hook, so each fast round follows a
    reference round; the ratio is of medians. ``*_per_round``: work units (e.g. images) per call, to
    compare rates. ``higher_is_better``: ratio = reference time per unit / fast time per unit (a speed-up,
    target is a minimum); otherwise ratio = fast / reference (target is a maximum)."""
    fast_t: list[float] = []
    ref_t: list[float] = []
    for _ in range(warmup):
        fast()
        reference()

    def ref_round() -> None:
        ref_t.append(timed(reference))

    def fast_round() -> None:
        fast_t.append(timed(fast))

    benchmark.pedantic(fast_round, setup=ref_round, rounds=n_rounds, iterations=1, warmup_rounds=0)
    f = statistics.median(fast_t) / fast_per_round
    r = statistics.median(ref_t) / ref_per_round
    ratio = r / f if higher_is_better else f / r
    return report(benchmark, name, ratio, target, higher_is_better, unit=unit,
                  fast_s=f, reference_s=r, fast_samples=fast_t, reference_samples=ref_t)


def report(benchmark, name: str, ratio: float, target: float, higher_is_better: bool, unit: str = "speed-up",
           **extra) -> dict:
    met = ratio >= target if higher_is_better else ratio <= target
    info = {"name": name, "ratio": ratio, "target": target, "higher_is_better": higher_is_better, "met": met,
            "unit": unit, "threads": torch.get_num_threads(), **extra}
    benchmark.extra_info.update(info)
    RESULTS.append(info)
    sign = ">=" if higher_is_better else "<="
    details = ", ".join(f"{k} {v:.4g}" for k, v in extra.items() if isinstance(v, float))
    print(f"\n[bench] {name}: {unit} {ratio:.2f} (target {sign} {target}) {'MET' if met else 'MISSED'}; {details}")
    if STRICT:
        assert met, f"{name}: {ratio:.2f}, target {sign} {target}"
    return info
