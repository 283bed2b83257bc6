"""What fingerprinting a sweep's data costs: first sweep (every file hashed) and second (digest cache: stats only).

    python tests/benchmarks/fingerprint_overhead.py --tree DIR [--files 5400] [--gigabytes 5] [--demo DIR]

``--tree`` gets an MVTec-AD-sized tree (15 categories in the MVTec layout, ``--files`` files of random bytes
totalling ``--gigabytes``; fingerprinting does not decode images, so random bytes cost what PNGs would), unless
it exists already. ``--demo`` also measures a folder made by ``rdbench make-synthetic``. The first pass reads
files the OS may still cache from writing them: it measures hashing, a lower bound on a cold disk.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from rdbench.config import RunConfig
from rdbench.data.mvtec import MVTEC_CATEGORIES
from rdbench.engine.run import data_block
from rdbench.records.fingerprint import results_cache
from rdbench.registry import load_plugins


def make_tree(root: Path, files: int, gigabytes: float, seed: int = 0) -> None:
    """Per category: train/good, test/good, test/defect and one mask per defective image, sizes equal."""
    rng = np.random.default_rng(seed)
    per_cat = files // len(MVTEC_CATEGORIES)
    size = int(gigabytes * 2**30 / (per_cat * len(MVTEC_CATEGORIES)))
    n_bad = per_cat // 6  # each defective image brings its mask
    n_train, n_good = per_cat - 2 * n_bad - per_cat // 6, per_cat // 6
    for cat in MVTEC_CATEGORIES:
        for folder, n in (("train/good", n_train), ("test/good", n_good), ("test/defect", n_bad),
                          ("ground_truth/defect", n_bad)):
            d = root / cat / folder
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                name = f"{i:03d}_mask.png" if folder.startswith("ground") else f"{i:03d}.png"
                (d / name).write_bytes(rng.bytes(size))


def sweep_seconds(root: Path, categories: list[str], results: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    cache = results_cache(results)
    blocks = [data_block(RunConfig(data_root=str(root), category=c), cache) for c in categories]
    cache.save()
    return time.perf_counter() - t0, {"files": sum(b["files"] for b in blocks),
                                      "gigabytes": sum(b["bytes"] for b in blocks) / 2**30,
                                      "hashed": cache.hashed, "reused": cache.reused}


def measure(root: Path, categories: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as results:
        first, facts = sweep_seconds(root, categories, Path(results))
        second, again = sweep_seconds(root, categories, Path(results))
    return {"first_s": round(first, 2), "second_s": round(second, 3), **facts, "second_hashed": again["hashed"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, required=True)
    ap.add_argument("--files", type=int, default=5400)
    ap.add_argument("--gigabytes", type=float, default=5.0)
    ap.add_argument("--demo", type=Path, default=None)
    a = ap.parse_args()
    load_plugins()
    out = {}
    if a.demo is not None:
        cats = sorted(p.name for p in a.demo.iterdir() if (p / "train").is_dir())
        out["demo"] = measure(a.demo, cats)
    if not a.tree.exists():
        t0 = time.perf_counter()
        make_tree(a.tree, a.files, a.gigabytes)
        out["tree_written_s"] = round(time.perf_counter() - t0, 1)
    out["mvtec_sized"] = measure(a.tree, list(MVTEC_CATEGORIES))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
