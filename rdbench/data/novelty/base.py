"""The interface every novelty dataset implements (``NoveltySource``), the registry that holds one instance of
each (``NOVELTY_DATASETS``, filled by ``@register`` in the dataset modules), and what the datasets share: the
images container (``Images``), the base of the datasets read whole from a fixed train/test split
(``SplitSource``), the DatasetError carrying the expected tree, the class-index check and the transform."""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

from rdbench.data.mvtec import DatasetError, load_image
from rdbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_rgb
from rdbench.registry import Registry


class Images:
    """Images held in memory (uint8 array, N x H x W or N x H x W x 3) or as file paths, decoded per item."""

    def __init__(self, array: np.ndarray | None = None, paths: Sequence[Path] | None = None):
        self.array, self.paths = array, list(paths) if paths is not None else None

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.paths)

    def subset(self, idx: Sequence[int]) -> Images:
        if self.array is not None:
            return Images(array=np.ascontiguousarray(self.array[np.asarray(idx, dtype=np.int64)]))
        return Images(paths=[self.paths[i] for i in idx])

    def image(self, i: int) -> Image.Image:
        if self.array is not None:
            return Image.fromarray(self.array[i])  # uint8 H x W -> 'L', H x W x 3 -> 'RGB'
        return load_image(self.paths[i])


def _grey_to_rgb(t: torch.Tensor) -> torch.Tensor:
    return t.expand(3, -1, -1).clone() if t.shape[0] == 1 else t


class NoveltySource(ABC):
    """One novelty dataset: where its files lie under a root, how to check and read them, its classes and its
    preprocessing. Subclasses set the class attributes and are registered with ``@register``."""

    name: ClassVar[str]  # registry key, the protocol's name
    title: ClassVar[str]  # as in the paper's Table 4
    folder: ClassVar[str]  # what the root must contain
    class_names: ClassVar[tuple[str, ...] | None] = None  # None: discovered on disk
    torchvision_class: ClassVar[type | None] = None  # the torchvision reader whose layout / format is followed
    mean: ClassVar[tuple[float, float, float] | None] = IMAGENET_MEAN  # None: no normalisation, values in [0, 1]
    std: ClassVar[tuple[float, float, float] | None] = IMAGENET_STD
    channels: ClassVar[int] = 3  # channels on disk; always 3 after the transform
    download_hint: ClassVar[str]  # how to get the files: `rdbench fetch`, or by hand; a run never downloads

    # ------------------------------------------------------------------------------------- layout

    @abstractmethod
    def expected_tree(self, root: str | Path = "<root>") -> str:
        """The layout under ``root`` that is accepted, as printed in every DatasetError."""

    @abstractmethod
    def check_layout(self, root: Path) -> None:
        """Raise DatasetError naming what is missing under the existing folder ``root``."""

    def error(self, problem: str, path: Path | str, fix: str, root: Path | str = "<root>") -> DatasetError:
        return DatasetError(f"{problem}: {path}\n{self.expected_tree(root)}\nFix: {fix}")

    def no_root(self) -> Path:
        """The root used when none is given; only datasets with a system-wide copy have one."""
        raise self.error(f"no data root given for {self.title}", "<root>",
                         f"pass the folder that contains {self.folder}/. {self.download_hint}")  # fmt: skip

    def resolve_root(self, root: str | Path | None) -> Path:
        """A root holding the dataset's files, or DatasetError with the expected tree."""
        if root is None:
            return self.no_root()
        root = Path(root).expanduser()
        if not root.is_dir():
            raise self.error("dataset root does not exist", root,
                             f"pass the folder that contains {self.folder}/. {self.download_hint}", root)  # fmt: skip
        self.check_layout(root)
        return root

    def check(self, root: str | Path | None = None) -> Path:
        """The cheap check before training (files exist, nothing decoded); returns the resolved root."""
        return self.resolve_root(root)

    # ------------------------------------------------------------------------------------- classes

    def classes(self, root: str | Path | None = None) -> tuple[str, ...]:
        """Class names in index order."""
        return self.class_names

    def check_class(self, classes: Sequence[str], normal_class: int) -> int:
        try:
            c = operator.index(normal_class)
        except TypeError:
            raise TypeError(f"normal_class must be an int class index, got {normal_class!r}") from None
        if not 0 <= c < len(classes):
            listing = ", ".join(f"{i}={n}" for i, n in enumerate(classes))
            raise ValueError(f"normal_class {c} out of range for {self.name} ({len(classes)} classes); "
                             f"valid: {listing}")  # fmt: skip
        return c

    # ------------------------------------------------------------------------------------- images

    @abstractmethod
    def train_images(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> Images:
        """The training images of ``normal_class``; ``split_seed`` / ``test_fraction`` matter only to datasets
        without an official split."""

    @abstractmethod
    def test_images(
        self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2
    ) -> tuple[Images, np.ndarray]:
        """The test images and their int64 class targets (every class, or the outliers' own target)."""

    @abstractmethod
    def data_files(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> list[Path]:
        """Every file a run on ``normal_class`` reads (its data fingerprint covers exactly these)."""

    def transform(self, image_size: int = 32) -> Callable[[Image.Image], torch.Tensor]:
        """PIL image -> float tensor 3 x S x S: Resize((S, S)) -> ToTensor() -> Normalize(mean, std) when set."""
        if operator.index(image_size) < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        steps: list = [T.Lambda(to_rgb)] if self.channels == 3 else []
        steps += [T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BILINEAR), T.ToTensor()]
        if self.mean is not None:
            steps.append(T.Normalize(self.mean, self.std))
        else:
            steps.append(T.Lambda(_grey_to_rgb))  # deviation: the authors keep 1 channel; the teacher needs 3
        return T.Compose(steps)


class SplitSource(NoveltySource):
    """A dataset with an official train / test split small enough to read whole into memory (MNIST,
    FashionMNIST, CIFAR-10): the training set is the train split filtered to the normal class, the test set is
    the full test split."""

    @abstractmethod
    def read_arrays(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """The split as read from disk: uint8 images and int64 targets."""

    def read_split(self, root: str | Path | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
        """The whole train or test split: (uint8 images N x H x W, or N x H x W x 3; int64 targets N)."""
        root = self.resolve_root(root)
        images, targets = self.read_arrays(root, train)
        n = len(self.class_names)
        if len(targets) and (targets.min() < 0 or targets.max() >= n):
            raise DatasetError(f"{self.title} labels outside 0..{n - 1} under {root}\n"
                               "Fix: the label file does not belong to this dataset; re-download it.")  # fmt: skip
        return images, targets

    def train_images(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> Images:
        images, targets = self.read_split(root, train=True)
        return Images(array=images).subset(np.flatnonzero(targets == normal_class))

    def test_images(
        self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2
    ) -> tuple[Images, np.ndarray]:
        images, targets = self.read_split(root, train=False)
        return Images(array=images), targets


NOVELTY_DATASETS: Registry[NoveltySource] = Registry("novelty dataset")

S = TypeVar("S", bound=type[NoveltySource])


def register(cls: S) -> S:
    """Class decorator: registers one instance of ``cls`` under ``cls.name``."""
    NOVELTY_DATASETS.add(cls.name, cls())
    return cls


def get_source(name: str) -> NoveltySource:
    """The registered dataset ``name``; unknown names raise ValueError listing the valid ones."""
    return NOVELTY_DATASETS.get(name)
