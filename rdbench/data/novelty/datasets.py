"""The torch Datasets of a one-class novelty run (``NoveltyTrain``, ``NoveltyTest`` yielding ``NoveltyItem``s),
the seeded stratified subset of ``NoveltyTest(max_images=N)``, and the by-name helpers the protocols call
(``check_novelty_data``, ``novelty_classes``, ...). Everything dataset-specific is asked of the registered
``NoveltySource``."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from rdbench.data.novelty.base import SplitSource, get_source


def check_novelty_data(name: str, root: str | Path | None = None) -> Path:
    """Cheap check before training (files exist; Caltech: every category and clutter hold images). Returns the
    resolved root; raises DatasetError naming what is missing, with the expected tree."""
    return get_source(name).check(root)


def novelty_classes(name: str, root: str | Path | None = None) -> tuple[str, ...]:
    """Class names in index order; Caltech-256 reads them from ``root`` (folder names, clutter excluded)."""
    return get_source(name).classes(root)


def resolve_root(name: str, root: str | Path | None) -> Path:
    """A root holding ``name``'s files, or DatasetError with the expected tree. ``root=None`` finds
    FashionMNIST in Debian's folder; the other datasets need a root."""
    return get_source(name).resolve_root(root)


def novelty_data_files(name: str, root: str | Path | None, normal_class: int, split_seed: int = 0,
                       test_fraction: float = 0.2) -> tuple[Path, list[Path]]:
    """(resolved root, every file a run on ``normal_class`` reads): what its data fingerprint covers."""
    source = get_source(name)
    resolved = source.resolve_root(root)
    return resolved, source.data_files(resolved, normal_class, split_seed, test_fraction)


def expected_tree(name: str, root: str | Path = "<root>") -> str:
    return get_source(name).expected_tree(root)


def read_split(name: str, root: str | Path | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """The whole train or test split of MNIST / FashionMNIST / CIFAR-10 as (uint8 images N x H x W for the grey
    sets, N x 32 x 32 x 3 for CIFAR-10; int64 targets N)."""
    source = get_source(name)
    if not isinstance(source, SplitSource):
        raise ValueError(f"{name} has no official split to read whole (caltech256: use caltech_split())")
    return source.read_split(root, train)


def stratified_subset(labels: Sequence[int] | np.ndarray, max_images: int, seed: int = 0) -> list[int]:
    """Sorted indices of a seeded subset of at most ``max_images`` items that keeps the proportion of each label
    (scikit-learn's stratified ``train_test_split``) and at least one item of every label present."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_images >= n:
        return list(range(n))
    values, counts = np.unique(labels, return_counts=True)
    if max_images < len(values):
        raise ValueError(f"max_images={max_images} cannot keep one item of each of the {len(values)} labels")
    # scikit-learn refuses to stratify a label of one item: those are kept outright, the rest split
    single = np.isin(labels, values[counts == 1])
    keep, rest = np.flatnonzero(single), np.flatnonzero(~single)
    k = max_images - len(keep)
    if k > 0:
        # it also needs at least one item per label left out; leaving out that few, proportions barely move
        stratify = labels[rest] if len(rest) - k >= len(np.unique(labels[rest])) else None
        picked, _ = train_test_split(rest, train_size=k, stratify=stratify, random_state=seed)
        keep = np.concatenate([keep, picked])
    # a label whose share rounds to no item (10 % normal, 2 kept: 0.2) gets one, in place of one of the largest
    rng = np.random.default_rng(seed)
    for v in np.setdiff1d(values, labels[keep]):
        kept_values, kept_counts = np.unique(labels[keep], return_counts=True)
        donor = np.flatnonzero(labels[keep] == kept_values[kept_counts.argmax()])
        keep[rng.choice(donor)] = rng.choice(np.flatnonzero(labels == v))
    return sorted(int(i) for i in keep)


def _check_max(max_images: int | None, minimum: int) -> int | None:
    if max_images is None:
        return None
    m = operator.index(max_images)
    if m < minimum:
        raise ValueError(f"max_images must be >= {minimum} (or None for all), got {max_images}")
    return m


class _NoveltyBase(Dataset):
    def _setup(self, name: str, root: str | Path | None, normal_class: int, image_size: int) -> None:
        self.source = get_source(name)
        self.name = self.source.name
        self.root = self.source.resolve_root(root)
        self.classes = self.source.classes(self.root)
        self.normal_class = self.source.check_class(self.classes, normal_class)
        self.image_size = image_size
        self.transform = self.source.transform(image_size)

    @property
    def class_name(self) -> str:
        return self.classes[self.normal_class]

    def __len__(self) -> int:
        return len(self.images)


class NoveltyTrain(_NoveltyBase):
    """Training images of the normal class -> float tensors 3 x S x S.

    MNIST / FashionMNIST / CIFAR-10: the train split filtered to ``normal_class`` (file order). Caltech-256: the
    normal class's train part (``split_seed``, ``test_fraction``; see ``caltech256``). ``max_images`` keeps the
    first N (smoke runs).
    """

    def __init__(
        self,
        name: str,
        root: str | Path | None,
        normal_class: int,
        image_size: int = 32,
        max_images: int | None = None,
        *,
        split_seed: int = 0,
        test_fraction: float = 0.2,
    ):
        self._setup(name, root, normal_class, image_size)
        max_images = _check_max(max_images, 1)
        images = self.source.train_images(self.root, self.normal_class, split_seed, test_fraction)
        if max_images is not None and max_images < len(images):
            images = images.subset(range(max_images))
        self.images = images

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.images.image(i))


class NoveltyItem(NamedTuple):
    """One test sample; a NamedTuple so default_collate batches it."""

    image: torch.Tensor  # 3 x S x S
    label: int  # 0 normal, 1 anomalous
    target: int  # original class index (Caltech outliers: clutter's folder index)


class NoveltyTest(_NoveltyBase):
    """The test set: the full test split (Caltech-256: normal test part + as many clutter outliers), label 0 for
    ``normal_class`` and 1 otherwise. ``max_images`` keeps a stratified subset chosen with ``seed``
    (``stratified_subset``); ``split_seed`` / ``test_fraction`` are the Caltech split's (match NoveltyTrain's).
    """

    def __init__(
        self,
        name: str,
        root: str | Path | None,
        normal_class: int,
        image_size: int = 32,
        max_images: int | None = None,
        seed: int = 0,
        *,
        split_seed: int = 0,
        test_fraction: float = 0.2,
    ):
        self._setup(name, root, normal_class, image_size)
        max_images = _check_max(max_images, 2)
        images, targets = self.source.test_images(self.root, self.normal_class, split_seed, test_fraction)
        labels = (targets != self.normal_class).astype(np.int64)
        if len(set(labels.tolist())) < 2:
            only = "normal" if labels.sum() == 0 else "anomalous"
            raise self.source.error(f"the test split has only {only} images for normal class {self.normal_class}",
                                    self.root, "use the complete test files; AUROC needs normal and anomalous images.",
                                    self.root)  # fmt: skip
        if max_images is not None and max_images < len(images):
            keep = stratified_subset(labels, max_images, seed)
            images, targets, labels = images.subset(keep), targets[keep], labels[keep]
        self.images, self.targets, self.labels = images, targets, labels

    def __getitem__(self, i: int) -> NoveltyItem:
        return NoveltyItem(self.transform(self.images.image(i)), int(self.labels[i]), int(self.targets[i]))
