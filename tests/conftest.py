"""Shared fixtures. ``tiny_mvtec`` is a hand-written MVTec tree for fast tests of any module."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rdbench.registry import load_plugins

# The paper's protocols and tables register from above (their entry point), as the CLI does at start.
load_plugins()

# Contents of the tiny_mvtec tree (per category: 4 train, 2 good + 2 defective test images, 32x32):
TINY_CATEGORIES: tuple[str, ...] = ("carpet", "bottle")
TINY_DEFECTS: dict[str, str] = {"carpet": "hole", "bottle": "broken_large"}
TINY_SIZE = 32
TINY_GRAYSCALE = "carpet/train/good/001.png"  # stored as mode 'L'
TINY_RGBA = "bottle/test/broken_large/000.png"  # stored as mode 'RGBA'


def write_tiny_mvtec(root: Path, seed: int = 0) -> Path:
    """Write the tiny tree under ``root`` and return ``root``. Defects are a bright 8x8 square at a
    per-image position in the defective images; their masks (0/255, mode 'L') mark exactly that square."""
    rng = np.random.default_rng(seed)

    def save(rel: str, arr: np.ndarray, mode: str | None = None) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(arr)
        if rel in (TINY_GRAYSCALE, TINY_RGBA):
            img = img.convert("L" if rel == TINY_GRAYSCALE else "RGBA")
        img.save(path)

    def normal() -> np.ndarray:
        return rng.integers(60, 120, (TINY_SIZE, TINY_SIZE, 3), dtype=np.uint8)

    for cat in TINY_CATEGORIES:
        for i in range(4):
            save(f"{cat}/train/good/{i:03d}.png", normal())
        for i in range(2):
            save(f"{cat}/test/good/{i:03d}.png", normal())
        defect = TINY_DEFECTS[cat]
        for i in range(2):
            img, mask = normal(), np.zeros((TINY_SIZE, TINY_SIZE), np.uint8)
            y, x = 4 + 12 * i, 8 + 4 * i
            img[y : y + 8, x : x + 8] = 250
            mask[y : y + 8, x : x + 8] = 255
            save(f"{cat}/test/{defect}/{i:03d}.png", img)
            save(f"{cat}/ground_truth/{defect}/{i:03d}_mask.png", mask)
    return root


@pytest.fixture
def tiny_mvtec(tmp_path: Path) -> Path:
    """Root of a tiny MVTec-layout dataset (a fresh copy per test, so tests may modify it).

    Categories ``carpet`` (defect ``hole``) and ``bottle`` (defect ``broken_large``); each has 4 train images,
    test/good/000-001 and test/<defect>/000-001 with ground_truth/<defect>/00i_mask.png; all 32x32 RGB PNGs
    except carpet/train/good/001.png (grayscale) and bottle/test/broken_large/000.png (RGBA). See the
    TINY_* constants in tests/conftest.py.
    """
    return write_tiny_mvtec(tmp_path / "mvtec")


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op torch thread for a whole test module (``pytestmark = pytest.mark.usefixtures("one_thread")``):
    other processes share this machine's few cores, and with one thread a step cannot stall on an OpenMP
    barrier waiting for a descheduled thread (seconds per step when the CPU is oversubscribed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
