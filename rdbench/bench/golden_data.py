"""The golden check's own data: small sets it writes itself, byte for byte the same on every machine.

Only integer arithmetic makes the pixels (numpy's PCG64 ``integers`` and integer sums), and they are stored
lossless (PNG, IDX), so no vectorised float function of numpy or a JPEG encoder can make another CPU write other
bytes. The MVTec-layout category is the exception the issue asks for: ``rdbench make-synthetic``'s own nut,
whose drawing uses float arithmetic; the check records every set's data fingerprint as its first stage, so a
machine that drew other pixels says so instead of failing at a later stage for a reason no one would look for.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from rdbench.data.synthetic import make_synthetic

# make-synthetic at 96 px, scored at 64 px: images and masks are resized as real MVTec AD images are (1024 -> 256),
# and the masks' bilinear resize leaves grey edge pixels, some at 128 of 255 (the threshold's nearest neighbour)
SYNTHETIC = {"categories": ("nut", "brick"), "n_train": 4, "n_test_good": 3, "n_test_bad": 5, "size": 96}
# IDX's type codes (MNIST's format): every element type the format defines
IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B, np.dtype(">i4"): 0x0C,
             np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def write_idx(path: Path, arr: np.ndarray) -> Path:
    """An IDX file (MNIST's format: magic, dimensions, raw bytes), gzip-compressed when the name ends in .gz."""
    blob = bytes([0, 0, IDX_CODES[arr.dtype], arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    blob += arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as f:  # mtime 0: the same bytes every time
            f.write(blob)
    else:
        path.write_bytes(blob)
    return path


def _class_images(rng: np.random.Generator, labels: np.ndarray, size: int, channels: int, step: int = 3
                  ) -> np.ndarray:
    """Noise over a faint band whose place depends on the class, made with integers only: hard enough that two
    epochs leave the classes apart but not perfectly (a saturated AUROC of 1 would hide a change of the scores)."""
    n = len(labels)
    img = rng.integers(0, 160, (n, size, size, channels), dtype=np.int64)
    for i, c in enumerate(labels):
        top = (int(c) * step) % (size - 6)
        img[i, top:top + 6] += 40
    img = np.clip(img, 0, 255).astype(np.uint8)
    return img[..., 0] if channels == 1 else img


def write_fashionmnist(root: Path) -> Path:
    """``<root>/FashionMNIST/raw/``: 12 training images per class (class 0 is the golden case's normal class) and
    20 test images, 2 per class, as 28 x 28 IDX files."""
    rng = np.random.default_rng(7)
    raw = root / "FashionMNIST" / "raw"
    for prefix, per_class in (("train", 12), ("t10k", 2)):
        labels = np.repeat(np.arange(10, dtype=np.uint8), per_class)
        labels = labels[rng.permutation(len(labels))]
        write_idx(raw / f"{prefix}-images-idx3-ubyte", _class_images(rng, labels, 28, 1))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return root


# folder -> (images, band row): the clutter's band one row below the normal class's, so the two overlap
CALTECH_CLASSES = {"001.ak47": (16, 0), "002.american-flag": (6, 12), "257.clutter": (8, 1)}


def write_caltech256(root: Path) -> Path:
    """``<root>/256_ObjectCategories/``: two categories and the clutter folder, 40 x 40 PNGs."""
    rng = np.random.default_rng(11)
    for folder, (n, row) in CALTECH_CLASSES.items():
        d = root / "256_ObjectCategories" / folder
        d.mkdir(parents=True, exist_ok=True)
        images = _class_images(rng, np.full(n, row), 40, 3, step=1)
        for i, img in enumerate(images):
            Image.fromarray(img).save(d / f"{folder[:3]}_{i + 1:04d}.png")
    return root


def write_all(root: Path | str) -> dict[str, Path]:
    """Every set of the suite under ``root``: ``{"synthetic": ..., "fashionmnist": ..., "caltech256": ...}``."""
    root = Path(root)
    make_synthetic(root / "synthetic", seed=0, **SYNTHETIC)
    return {"synthetic": root / "synthetic", "fashionmnist": write_fashionmnist(root / "fashionmnist"),
            "caltech256": write_caltech256(root / "caltech256")}
