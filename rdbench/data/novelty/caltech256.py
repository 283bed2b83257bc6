"""Caltech-256 as a novelty dataset: ``<root>/256_ObjectCategories/<NNN>.<name>/*.jpg`` (the official tarball),
and its one-class split. The paper gives none; from the literature it compares with (GPND / OiG / G2D) come the
first 150 images and clutter outliers making half the test set; the rest is rdbench's own (docs/parity.md):

* classes = the category folders sorted by name, excluding ``257.clutter``; ``normal_class`` indexes them.
* normal images = the category's images sorted by file name, the first 150 if it has more
  (``CALTECH_MAX_NORMAL``); ``caltech_default_classes(root)`` = the categories with >= 150 images.
* they are split into train / test by a seeded shuffle: test = round(n * ``test_fraction``) images (default
  0.2, so 120 / 30 for a 150-image category; at least 1 of each), the rest train.
* outliers = as many images as normal test images, drawn by a seeded shuffle from ``257.clutter``, so they
  make 50 % of the test set. Their ``target`` is clutter's index in the sorted folder list (256 for the real
  set, i.e. ``len(classes)``).
* seeded shuffle = order by SHA-256 of ``(split_seed, category, file name)``: deterministic across platforms,
  numpy and Python versions, and independent of directory listing order. Same ``split_seed`` -> same split;
  ``NoveltyTrain`` and ``NoveltyTest`` must get the same ``split_seed`` (default 0) so they do not overlap.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from rdbench.data.mvtec import IMAGE_EXTENSIONS
from rdbench.data.novelty.base import Images, NoveltySource, get_source, register

CALTECH_FOLDER = "256_ObjectCategories"
CALTECH_CLUTTER = "clutter"  # the category named '257.clutter' in the official release
CALTECH_MAX_NORMAL = 150  # first 150 images of a category (GPND / OiG); "first" by file name is rdbench's
_CALTECH_DIR = re.compile(r"^(\d+)\.(.+)$")


class CaltechDirs(NamedTuple):
    categories: list[Path]  # sorted, clutter excluded
    clutter: Path
    clutter_index: int  # position of clutter in the full sorted folder list


class CaltechSplit(NamedTuple):
    category: str  # folder name, e.g. '001.ak47'
    train: tuple[Path, ...]  # sorted by file name
    test_normal: tuple[Path, ...]  # sorted by file name
    test_outliers: tuple[Path, ...]  # from 257.clutter, sorted by file name
    clutter_index: int  # the outliers' target


def list_images(folder: Path) -> list[Path]:
    # the official release has a few non-image files (e.g. 198.spider/RENAME2): skipped by extension
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )  # fmt: skip


def _seeded_order(seed: int, tag: str, keys: Sequence[str]) -> list[int]:
    """A permutation of range(len(keys)) ordered by SHA-256 of (seed, tag, key): stable everywhere."""
    digest = [hashlib.sha256(f"{seed}\x00{tag}\x00{k}".encode()).hexdigest() for k in keys]
    return sorted(range(len(keys)), key=lambda i: (digest[i], i))


@register
class Caltech256Source(NoveltySource):
    name = "caltech256"
    title = "Caltech-256"
    folder = CALTECH_FOLDER
    download_hint = ("`rdbench fetch caltech256` downloads, checks and extracts it (into data/novelty: pass that as "
                     "--novelty-root); offline, extract 256_ObjectCategories.tar (Caltech-256, Griffin, Holub & "
                     "Perona, on CaltechDATA) in the root. A run itself never downloads.")  # fmt: skip

    def expected_tree(self, root: str | Path = "<root>") -> str:
        return "\n".join([
            "Expected layout (the official 256_ObjectCategories.tar, extracted):",
            f"  {root}/",
            f"  └── {CALTECH_FOLDER}/",
            "      ├── 001.ak47/*.jpg",
            "      ├── ...                   one folder <NNN>.<name> per category",
            "      ├── 256.toad/*.jpg",
            f"      └── 257.{CALTECH_CLUTTER}/*.jpg      the outliers",
            f"  (extensions: {' '.join(IMAGE_EXTENSIONS)}, any case)",
        ])  # fmt: skip

    def dirs(self, root: Path) -> CaltechDirs:
        base = root / CALTECH_FOLDER
        if not base.is_dir():
            hint = ""
            if root.is_dir() and any(_CALTECH_DIR.match(p.name) for p in root.iterdir() if p.is_dir()):
                hint = (f" The root itself looks like the {CALTECH_FOLDER} folder; pass its parent {root.parent} "
                        "as root.")  # fmt: skip
            raise self.error("Caltech-256 folder not found", base, self.download_hint + hint, root)
        dirs = sorted(p for p in base.iterdir() if p.is_dir() and _CALTECH_DIR.match(p.name))
        clutter = [p for p in dirs if _CALTECH_DIR.match(p.name).group(2) == CALTECH_CLUTTER]
        categories = [p for p in dirs if p not in clutter]
        if not categories:
            raise self.error("no category folders <NNN>.<name> in", base, self.download_hint, root)
        if not clutter:
            raise self.error(f"outlier folder 257.{CALTECH_CLUTTER} not found in", base,
                             f"the outliers are drawn from 257.{CALTECH_CLUTTER}; re-extract the full tarball.",
                             root)  # fmt: skip
        return CaltechDirs(categories, clutter[0], dirs.index(clutter[0]))

    def check_layout(self, root: Path) -> None:
        self.dirs(root)

    def check(self, root: str | Path | None = None) -> Path:
        """Also checks that every category and clutter hold images."""
        root = self.resolve_root(root)
        dirs = self.dirs(root)
        empty = [d.name for d in [*dirs.categories, dirs.clutter] if not list_images(d)]
        if empty:
            raise self.error(f"{len(empty)} Caltech-256 folder(s) without images ({', '.join(empty[:5])}"
                             f"{', ...' if len(empty) > 5 else ''}) in", root / CALTECH_FOLDER,
                             "re-extract the tarball; every category needs its .jpg images.", root)  # fmt: skip
        return root

    def classes(self, root: str | Path | None = None) -> tuple[str, ...]:
        """The category folder names, clutter excluded."""
        return tuple(p.name for p in self.dirs(self.resolve_root(root)).categories)

    def split(
        self, root: str | Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2
    ) -> CaltechSplit:
        """The one-class split of ``normal_class`` (the module docstring gives the protocol)."""
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        root = self.resolve_root(root)
        dirs = self.dirs(root)
        cat = dirs.categories[self.check_class([d.name for d in dirs.categories], normal_class)]
        normal = list_images(cat)[:CALTECH_MAX_NORMAL]
        if len(normal) < 2:
            raise self.error(f"category has {len(normal)} image(s), at least 2 are needed for a train/test split",
                             cat, "pick another normal class (caltech_default_classes(root) lists those with "
                             f">= {CALTECH_MAX_NORMAL} images).", root)  # fmt: skip
        n_test = min(max(round(len(normal) * test_fraction), 1), len(normal) - 1)
        order = _seeded_order(split_seed, cat.name, [p.name for p in normal])
        test_idx, train_idx = sorted(order[:n_test]), sorted(order[n_test:])
        clutter = list_images(dirs.clutter)
        if len(clutter) < n_test:
            raise self.error(f"{dirs.clutter.name} has {len(clutter)} image(s), {n_test} outliers are needed (as "
                             "many as normal test images)", dirs.clutter,
                             "re-extract the full tarball (257.clutter has 827 images).", root)  # fmt: skip
        tag = f"{dirs.clutter.name}/{cat.name}"  # outliers drawn per class
        picked = sorted(_seeded_order(split_seed, tag, [p.name for p in clutter])[:n_test])
        return CaltechSplit(cat.name, tuple(normal[i] for i in train_idx), tuple(normal[i] for i in test_idx),
                            tuple(clutter[i] for i in picked), dirs.clutter_index)  # fmt: skip

    def data_files(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> list[Path]:
        s = self.split(root, normal_class, split_seed, test_fraction)
        return sorted([*s.train, *s.test_normal, *s.test_outliers])

    def train_images(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> Images:
        return Images(paths=self.split(root, normal_class, split_seed, test_fraction).train)

    def test_images(
        self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2
    ) -> tuple[Images, np.ndarray]:
        s = self.split(root, normal_class, split_seed, test_fraction)
        targets = [normal_class] * len(s.test_normal) + [s.clutter_index] * len(s.test_outliers)
        return Images(paths=s.test_normal + s.test_outliers), np.array(targets, dtype=np.int64)


def caltech_split(root: str | Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> CaltechSplit:
    """The Caltech-256 one-class split (see the module docstring for the protocol)."""
    return get_source("caltech256").split(root, normal_class, split_seed, test_fraction)


def caltech_default_classes(root: str | Path) -> list[int]:
    """Indices (into ``novelty_classes('caltech256', root)``) of the categories with at least
    ``CALTECH_MAX_NORMAL`` (150) images: the default set of normal classes."""
    source = get_source("caltech256")
    dirs = source.dirs(source.resolve_root(root))
    return [i for i, d in enumerate(dirs.categories) if len(list_images(d)) >= CALTECH_MAX_NORMAL]
