"""One-class novelty detection data (paper Table 4): MNIST, FashionMNIST, CIFAR-10 and Caltech-256.

Protocol (the authors' ``dataset.load_data`` in hq-deng/RD4AD for MNIST / FashionMNIST / CIFAR-10): one class
is normal; the training set is the train split filtered to that class; the test set is the FULL test split
with label 0 for the normal class and 1 for every other class. Nothing is ever downloaded (torchvision's
readers are only used with ``download=False``); every dataset is read from a local root.

Preprocessing per dataset (``novelty_transform``; ``image_size`` S, default 32 as in the authors' helper):

* ``mnist``, ``fashionmnist``: ``Resize((S, S))`` -> ``ToTensor()``, NO normalisation (values in [0, 1]).
  Deviation from the authors: their tensors are 1 x S x S, but the ImageNet ResNet teacher needs 3 channels,
  so rdbench repeats the grey channel to 3 x S x S (the three channels are identical).
* ``cifar10``: ``Resize((S, S))`` -> ``ToTensor()`` -> ImageNet normalisation, mean (0.485, 0.456, 0.406),
  std (0.229, 0.224, 0.225).
* ``caltech256`` (never released by the authors): RGB -> the same as CIFAR-10 (ImageNet normalisation, S x S).

Local layouts (what ``resolve_root`` / ``check_novelty_data`` accept; ``expected_tree(name)`` prints them):

* MNIST / FashionMNIST: torchvision's ``<root>/MNIST/raw/`` (``<root>/FashionMNIST/raw/``) holding
  ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``.
  torchvision 0.29 with ``download=False`` reads only the uncompressed files there (it merely checks that
  they exist; its legacy ``processed/*.pt`` caches are not used by rdbench). rdbench reads the files itself
  (``read_idx``: numpy, the same arrays as torchvision's reader) and also accepts the ``.gz`` files as
  downloaded, or the four files directly in ``<root>``. FashionMNIST is found
  without a root in ``/usr/share/datasets/fashion-mnist`` (Debian package ``dataset-fashion-mnist``, four
  ``.gz`` files in that folder), read in place - nothing is copied or extracted.
* CIFAR-10: ``<root>/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}`` (the extracted
  ``cifar-10-python.tar.gz``), parsed by torchvision's own ``CIFAR10`` class. Its constructor verifies the md5
  of every batch file even with ``download=False`` (so a re-pickled or test copy fails with "Dataset not found
  or corrupted"); rdbench uses a subclass whose file lists carry no md5 (torchvision's ``check_integrity``
  then only checks existence) - same parsing, no integrity hashing at each construction.
* Caltech-256: ``<root>/256_ObjectCategories/<NNN>.<name>/*.jpg`` (the official tarball), e.g. ``001.ak47``
  ... ``256.toad`` and ``257.clutter``.

Caltech-256 protocol (a project choice: the paper gives no split; follows GPND / OiG / G2D):

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

``NoveltyTest(max_images=N)`` keeps a stratified, seeded subset (same normal/anomalous proportion, at least
one of each label) for CI-sized runs; ``NoveltyTrain(max_images=N)`` keeps the first N training images.
"""

from __future__ import annotations

import gzip
import hashlib
import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision import datasets as tvd
from torchvision import transforms as T

from rdbench.data.mvtec import IMAGE_EXTENSIONS, DatasetError, load_image
from rdbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD, to_rgb
from rdbench.registry import Registry

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist
IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip
CIFAR_FOLDER = "cifar-10-batches-py"
CIFAR_FILES: tuple[str, ...] = tuple(f for f, _ in tvd.CIFAR10.train_list + tvd.CIFAR10.test_list) + (
    tvd.CIFAR10.meta["filename"],
)
CALTECH_FOLDER = "256_ObjectCategories"
CALTECH_CLUTTER = "clutter"  # the category named '257.clutter' in the official release
CALTECH_MAX_NORMAL = 150  # first 150 images of a category (GPND / OiG convention)
_CALTECH_DIR = re.compile(r"^(\d+)\.(.+)$")


@dataclass(frozen=True)
class NoveltySpec:
    """One novelty dataset. ``classes`` is None where they are discovered on disk (Caltech-256)."""

    name: str
    title: str  # as in the paper's Table 4
    classes: tuple[str, ...] | None
    torchvision_class: type | None  # the torchvision reader whose layout/format rdbench follows
    mean: tuple[float, float, float] | None  # None: no normalisation (values in [0, 1])
    std: tuple[float, float, float] | None
    channels: int  # channels on disk; always 3 after the transform

    @property
    def folder(self) -> str:
        """The folder torchvision's reader expects under the root."""
        if self.name == "cifar10":
            return CIFAR_FOLDER
        if self.name == "caltech256":
            return CALTECH_FOLDER
        return self.torchvision_class.__name__  # MNIST / FashionMNIST (its raw/ subfolder holds the files)


NOVELTY_DATASETS: Registry[NoveltySpec] = Registry("novelty dataset")
NOVELTY_DATASETS.add("mnist", NoveltySpec(
    "mnist", "MNIST", tuple(str(d) for d in range(10)), tvd.MNIST, None, None, 1))  # fmt: skip
NOVELTY_DATASETS.add("fashionmnist", NoveltySpec(
    "fashionmnist", "FashionMNIST", tuple(tvd.FashionMNIST.classes), tvd.FashionMNIST, None, None, 1))  # fmt: skip
NOVELTY_DATASETS.add("cifar10", NoveltySpec(
    "cifar10", "CIFAR10",
    ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    tvd.CIFAR10, IMAGENET_MEAN, IMAGENET_STD, 3))  # fmt: skip
NOVELTY_DATASETS.add("caltech256", NoveltySpec(
    "caltech256", "Caltech-256", None, None, IMAGENET_MEAN, IMAGENET_STD, 3))  # fmt: skip


def get_spec(name: str) -> NoveltySpec:
    """The spec of ``name``; unknown names raise ValueError listing the valid ones."""
    return NOVELTY_DATASETS.get(name)


# ---------------------------------------------------------------------------------------------- errors


def expected_tree(name: str, root: str | Path = "<root>") -> str:
    spec = get_spec(name)
    if spec.name in ("mnist", "fashionmnist"):
        files = [f"          {'├' if i < 3 else '└'}── {f}" for i, f in enumerate(IDX_FILES)]
        text = "\n".join([
            "Expected layout (torchvision's, as read with download=False):",
            f"  {root}/",
            f"  └── {spec.folder}/",
            "      └── raw/",
            *files,
            "  torchvision itself needs these four uncompressed files; rdbench also reads the downloaded .gz",
            f"  files (<name>.gz) and the four files directly in {root}/.",
        ])  # fmt: skip
        if spec.name == "fashionmnist":
            text += (f"\n  Without a root: {DEBIAN_FASHION_MNIST}/<name>.gz for the four names"
                     " (Debian package dataset-fashion-mnist).")  # fmt: skip
        return text
    if spec.name == "cifar10":
        return "\n".join([
            "Expected layout (torchvision's, as read with download=False):",
            f"  {root}/",
            f"  └── {CIFAR_FOLDER}/",
            "      ├── batches.meta",
            "      ├── data_batch_1 ... data_batch_5",
            "      └── test_batch",
            "  (the extracted cifar-10-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html)",
        ])  # fmt: skip
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


_DOWNLOAD_FIX = {
    "mnist": "Download MNIST on a machine with internet access (torchvision.datasets.MNIST(root, download=True)) "
             "and copy its MNIST/raw/ folder here; rdbench never downloads.",
    "fashionmnist": "Install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) and "
                    "pass no root, or download with torchvision.datasets.FashionMNIST(root, download=True) on a "
                    "machine with internet access and copy its FashionMNIST/raw/ folder here; rdbench never "
                    "downloads.",
    "cifar10": "Download cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html) on a machine with "
               "internet access and extract it in the root; rdbench never downloads.",
    "caltech256": "Download 256_ObjectCategories.tar (Caltech-256, Griffin, Holub & Perona, on CaltechDATA) on a "
                  "machine with internet access and extract it in the root; rdbench never downloads.",
}  # fmt: skip


def _error(name: str, problem: str, path: Path | str, fix: str, root: Path | str = "<root>") -> DatasetError:
    return DatasetError(f"{problem}: {path}\n{expected_tree(name, root)}\nFix: {fix}")


# ------------------------------------------------------------------------------------------ locating


def _idx_folder_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """For each IDX name: the uncompressed file (what torchvision reads) or else the .gz one."""
    found, missing = {}, []
    for stem in IDX_FILES:
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                found[stem] = cand
                break
        else:
            missing.append(stem)
    return found, missing


def idx_files(name: str, root: str | Path) -> dict[str, Path]:
    """The four IDX files of MNIST / FashionMNIST under ``root`` (torchvision layout, else flat in ``root``)."""
    spec = get_spec(name)
    if spec.name not in ("mnist", "fashionmnist"):
        raise ValueError(f"{name!r} is not stored as IDX files (only mnist and fashionmnist are)")
    root = Path(root).expanduser()
    raw = root / spec.folder / "raw"
    found_raw, missing_raw = _idx_folder_files(raw)
    if not missing_raw:
        return found_raw
    found_flat, missing_flat = _idx_folder_files(root)
    if not missing_flat:
        return found_flat
    # report against the layout the user seems to have tried: the flat one if it has some of the files
    folder, missing = (root, missing_flat) if found_flat and not found_raw else (raw, missing_raw)
    raise _error(spec.name, f"missing {spec.title} file(s) {', '.join(missing)} (uncompressed or .gz) in", folder,
                 f"put the four IDX files (uncompressed or .gz) in {raw}/. " + _DOWNLOAD_FIX[spec.name],
                 root)  # fmt: skip


def resolve_root(name: str, root: str | Path | None) -> Path:
    """A root holding ``name``'s files, or DatasetError with the expected tree. ``root=None`` finds
    FashionMNIST in ``DEBIAN_FASHION_MNIST``; the other datasets need a root."""
    spec = get_spec(name)
    if root is None:
        if spec.name == "fashionmnist":
            debian = Path(DEBIAN_FASHION_MNIST)
            if debian.is_dir():
                idx_files(spec.name, debian)  # raises naming the missing files
                return debian
            raise _error(spec.name, "no data root given and the Debian FashionMNIST folder does not exist", debian,
                         _DOWNLOAD_FIX[spec.name])  # fmt: skip
        raise _error(spec.name, f"no data root given for {spec.title}", "<root>",
                     f"pass the folder that contains {spec.folder}/. {_DOWNLOAD_FIX[spec.name]}")  # fmt: skip
    root = Path(root).expanduser()
    if not root.is_dir():
        raise _error(spec.name, "dataset root does not exist", root,
                     f"pass the folder that contains {spec.folder}/. {_DOWNLOAD_FIX[spec.name]}", root)  # fmt: skip
    if spec.name in ("mnist", "fashionmnist"):
        idx_files(spec.name, root)
    elif spec.name == "cifar10":
        _cifar_files(root)
    else:
        _caltech_dirs(root)
    return root


def _cifar_files(root: Path) -> list[Path]:
    folder = root / CIFAR_FOLDER
    if not folder.is_dir():
        hint = ""
        if (root / "data_batch_1").is_file():
            hint = f" The root itself looks like the {CIFAR_FOLDER} folder; pass its parent {root.parent} as root."
        raise _error("cifar10", "CIFAR-10 folder not found", folder, _DOWNLOAD_FIX["cifar10"] + hint, root)
    missing = [f for f in CIFAR_FILES if not (folder / f).is_file()]
    if missing:
        raise _error("cifar10", f"missing CIFAR-10 file(s) {', '.join(missing)} in", folder,
                     "re-extract cifar-10-python.tar.gz. " + _DOWNLOAD_FIX["cifar10"], root)  # fmt: skip
    return [folder / f for f in CIFAR_FILES]


def _list_caltech_images(folder: Path) -> list[Path]:
    # the official release has a few non-image files (e.g. 198.spider/RENAME2): skipped by extension
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )  # fmt: skip


class _CaltechDirs(NamedTuple):
    categories: list[Path]  # sorted, clutter excluded
    clutter: Path
    clutter_index: int  # position of clutter in the full sorted folder list


def _caltech_dirs(root: Path) -> _CaltechDirs:
    base = root / CALTECH_FOLDER
    if not base.is_dir():
        hint = ""
        if root.is_dir() and any(_CALTECH_DIR.match(p.name) for p in root.iterdir() if p.is_dir()):
            hint = f" The root itself looks like the {CALTECH_FOLDER} folder; pass its parent {root.parent} as root."
        raise _error("caltech256", "Caltech-256 folder not found", base, _DOWNLOAD_FIX["caltech256"] + hint, root)
    dirs = sorted(p for p in base.iterdir() if p.is_dir() and _CALTECH_DIR.match(p.name))
    clutter = [p for p in dirs if _CALTECH_DIR.match(p.name).group(2) == CALTECH_CLUTTER]
    categories = [p for p in dirs if p not in clutter]
    if not categories:
        raise _error("caltech256", "no category folders <NNN>.<name> in", base, _DOWNLOAD_FIX["caltech256"], root)
    if not clutter:
        raise _error("caltech256", f"outlier folder 257.{CALTECH_CLUTTER} not found in", base,
                     f"the outliers are drawn from 257.{CALTECH_CLUTTER}; re-extract the full tarball.",
                     root)  # fmt: skip
    return _CaltechDirs(categories, clutter[0], dirs.index(clutter[0]))


def check_novelty_data(name: str, root: str | Path | None = None) -> Path:
    """Cheap check before training (files exist; Caltech: every category and clutter hold images). Returns the
    resolved root; raises DatasetError naming what is missing, with the expected tree."""
    spec = get_spec(name)
    root = resolve_root(spec.name, root)
    if spec.name == "caltech256":
        dirs = _caltech_dirs(root)
        empty = [d.name for d in [*dirs.categories, dirs.clutter] if not _list_caltech_images(d)]
        if empty:
            raise _error(spec.name, f"{len(empty)} Caltech-256 folder(s) without images ({', '.join(empty[:5])}"
                         f"{', ...' if len(empty) > 5 else ''}) in", root / CALTECH_FOLDER,
                         "re-extract the tarball; every category needs its .jpg images.", root)  # fmt: skip
    return root


def novelty_classes(name: str, root: str | Path | None = None) -> tuple[str, ...]:
    """Class names in index order; Caltech-256 reads them from ``root`` (folder names, clutter excluded)."""
    spec = get_spec(name)
    if spec.classes is not None:
        return spec.classes
    return tuple(p.name for p in _caltech_dirs(resolve_root(spec.name, root)).categories)


def caltech_default_classes(root: str | Path) -> list[int]:
    """Indices (into ``novelty_classes('caltech256', root)``) of the categories with at least
    ``CALTECH_MAX_NORMAL`` (150) images: the default set of normal classes."""
    dirs = _caltech_dirs(resolve_root("caltech256", root))
    return [i for i, d in enumerate(dirs.categories) if len(_list_caltech_images(d)) >= CALTECH_MAX_NORMAL]


def _check_class(spec: NoveltySpec, classes: Sequence[str], normal_class: int) -> int:
    try:
        c = operator.index(normal_class)
    except TypeError:
        raise TypeError(f"normal_class must be an int class index, got {normal_class!r}") from None
    if not 0 <= c < len(classes):
        listing = ", ".join(f"{i}={n}" for i, n in enumerate(classes))
        raise ValueError(f"normal_class {c} out of range for {spec.name} ({len(classes)} classes); "
                         f"valid: {listing}")  # fmt: skip
    return c


# ---------------------------------------------------------------------------------------------- reading

_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; ``.gz`` decompressed on the fly): 2 zero bytes, a type code, the
    number of dimensions, the dimensions as big-endian uint32, then big-endian data. Same array as
    torchvision's ``read_sn3_pascalvincent_tensor``; malformed files raise DatasetError naming the file."""
    path = Path(path)

    def bad(why: str) -> DatasetError:
        return DatasetError(f"cannot read IDX file: {path}\n  ({why})\n"
                            "Fix: the file is corrupt or not an IDX file; re-download/re-extract it.")  # fmt: skip

    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise bad(f"{type(e).__name__}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES or not 1 <= data[3] <= 3:
        raise bad(f"bad magic number {data[:4].hex() or '(empty file)'}")
    nd, dtype = data[3], np.dtype(_IDX_DTYPES[data[2]])
    if len(data) < 4 + 4 * nd:
        raise bad("truncated header")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(nd))
    count = math.prod(dims)
    offset = 4 + 4 * nd
    if len(data) - offset != count * dtype.itemsize:
        raise bad(f"header says {'x'.join(map(str, dims))} values of {dtype.itemsize} byte(s), "
                  f"file has {len(data) - offset} data bytes")  # fmt: skip
    arr = np.frombuffer(data, dtype=dtype, offset=offset).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=False)


class _LocalCIFAR10(tvd.CIFAR10):
    """torchvision's CIFAR10 parser with the md5 entries removed: torchvision's ``check_integrity(path, None)``
    then only checks that each file exists (torchvision verifies md5 of all batch files even with
    ``download=False``). Never downloads."""

    train_list = [[f, None] for f, _ in tvd.CIFAR10.train_list]
    test_list = [[f, None] for f, _ in tvd.CIFAR10.test_list]
    meta = {**tvd.CIFAR10.meta, "md5": None}

    def download(self) -> None:  # pragma: no cover - download=False always; belt and braces
        raise RuntimeError("rdbench never downloads datasets")


def read_split(name: str, root: str | Path | None, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """The whole train or test split of MNIST / FashionMNIST / CIFAR-10 as (uint8 images N x H x W for the grey
    sets, N x 32 x 32 x 3 for CIFAR-10; int64 targets N)."""
    spec = get_spec(name)
    root = resolve_root(spec.name, root)
    if spec.name in ("mnist", "fashionmnist"):
        files = idx_files(spec.name, root)
        prefix = "train" if train else "t10k"
        img_path, lab_path = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
        images, labels = read_idx(img_path), read_idx(lab_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise DatasetError(f"{img_path} holds {images.dtype} data of {images.ndim} dimension(s), expected uint8 "
                               "images N x H x W\nFix: re-download the file.")  # fmt: skip
        if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
            raise DatasetError(f"{lab_path} holds {labels.dtype} {labels.shape}, expected {len(images)} uint8 labels "
                               f"(one per image of {img_path})\nFix: re-download the files.")  # fmt: skip
        targets = labels.astype(np.int64)
    elif spec.name == "cifar10":
        _cifar_files(root)
        try:
            ds = _LocalCIFAR10(str(root), train=train, download=False)
        except Exception as e:  # unpickling errors, wrong shapes, ...
            raise _error(spec.name, f"cannot read CIFAR-10 batches ({type(e).__name__}: {e}) in",
                         root / CIFAR_FOLDER, "re-extract cifar-10-python.tar.gz.", root) from e  # fmt: skip
        images, targets = np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
    else:
        raise ValueError("caltech256 is read from image files; use caltech_split()")
    if len(targets) and (targets.min() < 0 or targets.max() >= len(spec.classes)):
        raise DatasetError(f"{spec.title} labels outside 0..{len(spec.classes) - 1} under {root}\n"
                           "Fix: the label file does not belong to this dataset; re-download it.")  # fmt: skip
    return images, targets


class CaltechSplit(NamedTuple):
    category: str  # folder name, e.g. '001.ak47'
    train: tuple[Path, ...]  # sorted by file name
    test_normal: tuple[Path, ...]  # sorted by file name
    test_outliers: tuple[Path, ...]  # from 257.clutter, sorted by file name
    clutter_index: int  # the outliers' target


def _seeded_order(seed: int, tag: str, keys: Sequence[str]) -> list[int]:
    """A permutation of range(len(keys)) ordered by SHA-256 of (seed, tag, key): stable everywhere."""
    digest = [hashlib.sha256(f"{seed}\x00{tag}\x00{k}".encode()).hexdigest() for k in keys]
    return sorted(range(len(keys)), key=lambda i: (digest[i], i))


def caltech_split(
    root: str | Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2
) -> CaltechSplit:
    """The Caltech-256 one-class split (see the module docstring for the protocol)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    root = resolve_root("caltech256", root)
    dirs = _caltech_dirs(root)
    spec = get_spec("caltech256")
    c = _check_class(spec, [d.name for d in dirs.categories], normal_class)
    cat = dirs.categories[c]
    normal = _list_caltech_images(cat)[:CALTECH_MAX_NORMAL]
    if len(normal) < 2:
        raise _error(spec.name, f"category has {len(normal)} image(s), at least 2 are needed for a train/test "
                     "split", cat, "pick another normal class (caltech_default_classes(root) lists those with "
                     f">= {CALTECH_MAX_NORMAL} images).", root)  # fmt: skip
    n_test = min(max(round(len(normal) * test_fraction), 1), len(normal) - 1)
    order = _seeded_order(split_seed, cat.name, [p.name for p in normal])
    test_idx, train_idx = sorted(order[:n_test]), sorted(order[n_test:])
    clutter = _list_caltech_images(dirs.clutter)
    if len(clutter) < n_test:
        raise _error(spec.name, f"{dirs.clutter.name} has {len(clutter)} image(s), {n_test} outliers are needed "
                     "(as many as normal test images)", dirs.clutter,
                     "re-extract the full tarball (257.clutter has 827 images).", root)  # fmt: skip
    picked = sorted(_seeded_order(split_seed, f"{dirs.clutter.name}/{cat.name}", [p.name for p in clutter])[:n_test])
    return CaltechSplit(
        cat.name,
        tuple(normal[i] for i in train_idx),
        tuple(normal[i] for i in test_idx),
        tuple(clutter[i] for i in picked),
        dirs.clutter_index,
    )


# ---------------------------------------------------------------------------------------------- datasets


def _grey_to_rgb(t: torch.Tensor) -> torch.Tensor:
    return t.expand(3, -1, -1).clone() if t.shape[0] == 1 else t


def novelty_transform(name: str, image_size: int = 32) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image -> float tensor 3 x S x S with ``name``'s preprocessing (module docstring)."""
    spec = get_spec(name)
    if operator.index(image_size) < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    steps: list = [T.Lambda(to_rgb)] if spec.channels == 3 else []
    steps += [T.Resize((image_size, image_size), interpolation=T.InterpolationMode.BILINEAR), T.ToTensor()]
    if spec.mean is not None:
        steps.append(T.Normalize(spec.mean, spec.std))
    else:
        steps.append(T.Lambda(_grey_to_rgb))  # deviation: the authors keep 1 channel
    return T.Compose(steps)


def _check_max(max_images: int | None, minimum: int) -> int | None:
    if max_images is None:
        return None
    m = operator.index(max_images)
    if m < minimum:
        raise ValueError(f"max_images must be >= {minimum} (or None for all), got {max_images}")
    return m


def stratified_subset(labels: Sequence[int] | np.ndarray, max_images: int, seed: int = 0) -> list[int]:
    """Sorted indices of a seeded subset of at most ``max_images`` items that keeps the proportion of each
    label (largest remainder) and at least one item of every label present."""
    labels = np.asarray(labels)
    n = len(labels)
    if max_images >= n:
        return list(range(n))
    values = sorted(set(labels.tolist()))
    if max_images < len(values):
        raise ValueError(f"max_images={max_images} cannot keep one item of each of the {len(values)} labels")
    counts = {v: int((labels == v).sum()) for v in values}
    quota = {v: max(1, math.floor(max_images * counts[v] / n)) for v in values}
    # hand out what is left by largest remainder, never above a label's count
    rest = sorted(values, key=lambda v: (-(max_images * counts[v] / n - math.floor(max_images * counts[v] / n)), v))
    while sum(quota.values()) < max_images:
        for v in rest:
            if sum(quota.values()) < max_images and quota[v] < counts[v]:
                quota[v] += 1
    while sum(quota.values()) > max_images:  # only when the minimum of 1 pushed it over
        v = max(values, key=lambda v: (quota[v], -v))
        quota[v] -= 1
    keep: list[int] = []
    for v in values:
        idx = np.flatnonzero(labels == v)
        order = _seeded_order(seed, f"label{v}", [str(i) for i in idx])
        keep += [int(idx[i]) for i in order[: quota[v]]]
    return sorted(keep)


class _Source:
    """Images held in memory (uint8 array) or as file paths, decoded per item."""

    def __init__(self, array: np.ndarray | None = None, paths: Sequence[Path] | None = None):
        self.array, self.paths = array, list(paths) if paths is not None else None

    def __len__(self) -> int:
        return len(self.array) if self.array is not None else len(self.paths)

    def subset(self, idx: Sequence[int]) -> _Source:
        if self.array is not None:
            return _Source(array=np.ascontiguousarray(self.array[np.asarray(idx, dtype=np.int64)]))
        return _Source(paths=[self.paths[i] for i in idx])

    def image(self, i: int) -> Image.Image:
        if self.array is not None:
            a = self.array[i]
            return Image.fromarray(a)  # uint8 H x W -> 'L', H x W x 3 -> 'RGB'
        return load_image(self.paths[i])


class _NoveltyBase(Dataset):
    def _setup(self, name: str, root: str | Path | None, normal_class: int, image_size: int) -> None:
        self.spec = get_spec(name)
        self.name = self.spec.name
        self.root = resolve_root(self.name, root)
        self.classes = novelty_classes(self.name, self.root)
        self.normal_class = _check_class(self.spec, self.classes, normal_class)
        self.image_size = image_size
        self.transform = novelty_transform(self.name, image_size)

    @property
    def class_name(self) -> str:
        return self.classes[self.normal_class]

    def __len__(self) -> int:
        return len(self.source)


class NoveltyTrain(_NoveltyBase):
    """Training images of the normal class -> float tensors 3 x S x S.

    MNIST / FashionMNIST / CIFAR-10: the train split filtered to ``normal_class`` (file order). Caltech-256: the
    normal class's train part (``split_seed``, ``test_fraction``; see the module docstring). ``max_images``
    keeps the first N (smoke runs).
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
        if self.name == "caltech256":
            self.split = caltech_split(self.root, self.normal_class, split_seed, test_fraction)
            source = _Source(paths=self.split.train)
        else:
            images, targets = read_split(self.name, self.root, train=True)
            source = _Source(array=images).subset(np.flatnonzero(targets == self.normal_class))
        if max_images is not None and max_images < len(source):
            source = source.subset(range(max_images))
        self.source = source

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(self.source.image(i))


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
        if self.name == "caltech256":
            self.split = caltech_split(self.root, self.normal_class, split_seed, test_fraction)
            source = _Source(paths=self.split.test_normal + self.split.test_outliers)
            n_normal, n_outliers = len(self.split.test_normal), len(self.split.test_outliers)
            targets = np.array([self.normal_class] * n_normal + [self.split.clutter_index] * n_outliers, np.int64)
        else:
            images, targets = read_split(self.name, self.root, train=False)
            source = _Source(array=images)
        labels = (targets != self.normal_class).astype(np.int64)
        if len(set(labels.tolist())) < 2:
            only = "normal" if labels.sum() == 0 else "anomalous"
            raise _error(self.name, f"the test split has only {only} images for normal class {self.normal_class}",
                         self.root, "use the complete test files; AUROC needs normal and anomalous images.",
                         self.root)  # fmt: skip
        if max_images is not None and max_images < len(source):
            keep = stratified_subset(labels, max_images, seed)
            source, targets, labels = source.subset(keep), targets[keep], labels[keep]
        self.source, self.targets, self.labels = source, targets, labels

    def __getitem__(self, i: int) -> NoveltyItem:
        return NoveltyItem(self.transform(self.source.image(i)), int(self.labels[i]), int(self.targets[i]))


__all__ = [
    "CALTECH_MAX_NORMAL",
    "DEBIAN_FASHION_MNIST",
    "NOVELTY_DATASETS",
    "CaltechSplit",
    "NoveltyItem",
    "NoveltySpec",
    "NoveltyTest",
    "NoveltyTrain",
    "caltech_default_classes",
    "caltech_split",
    "check_novelty_data",
    "expected_tree",
    "get_spec",
    "idx_files",
    "novelty_classes",
    "novelty_transform",
    "read_idx",
    "read_split",
    "resolve_root",
    "stratified_subset",
]
