"""MNIST as a novelty dataset: the four IDX files in torchvision's ``<root>/MNIST/raw/`` layout (or directly in
``<root>``), uncompressed or ``.gz``, read by torchvision's own IDX readers. Also the base of FashionMNIST,
which has the same format."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tvd
from torchvision.datasets.mnist import read_image_file, read_label_file

from rdbench.data.mvtec import DatasetError
from rdbench.data.novelty.base import SplitSource, register

IDX_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte",
)  # fmt: skip


def read_idx_file(path: Path, reader: Callable[[str], torch.Tensor]) -> np.ndarray:
    """``reader`` (torchvision's ``read_image_file`` or ``read_label_file``) applied to ``path`` as a numpy array;
    a malformed file raises DatasetError naming it."""
    try:
        if path.suffix != ".gz":
            return reader(str(path)).numpy()
        # torchvision's readers open only plain files (0.29 has no .gz support with download=False); a temporary
        # folder, not the data folder, takes the decompressed copy, so read-only folders (Debian's) work in place
        with tempfile.TemporaryDirectory(prefix="rdbench-idx-") as tmp:
            plain = Path(tmp) / path.stem
            with gzip.open(path, "rb") as src, open(plain, "wb") as dst:
                shutil.copyfileobj(src, dst)
            return reader(str(plain)).numpy()
    except Exception as e:  # torchvision asserts on a bad header and fails in view() on a short file
        why = str(e) or "not an IDX header (magic number, type code or dimensions)"
        fix = "Fix: the file is corrupt or not an IDX file; re-download/re-extract it."
        raise DatasetError(f"cannot read IDX file: {path}\n  ({type(e).__name__}: {why})\n{fix}") from e


def _idx_folder_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """For each IDX name: the uncompressed file (what torchvision itself reads) or else the .gz one."""
    found, missing = {}, []
    for stem in IDX_FILES:
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                found[stem] = cand
                break
        else:
            missing.append(stem)
    return found, missing


@register
class MNISTSource(SplitSource):
    name = "mnist"
    title = "MNIST"
    folder = "MNIST"  # torchvision's class name; its raw/ subfolder holds the files
    class_names = tuple(str(d) for d in range(10))
    torchvision_class = tvd.MNIST
    mean = std = None  # the authors do not normalise the grey sets
    channels = 1
    download_hint = ("`rdbench fetch mnist` downloads and checks it (into data/novelty: pass that as --novelty-root); "
                     "offline, copy the MNIST/raw/ folder of torchvision.datasets.MNIST(root, download=True) here. "
                     "A run itself never downloads.")  # fmt: skip

    def expected_tree(self, root: str | Path = "<root>") -> str:
        files = [f"          {'├' if i < 3 else '└'}── {f}" for i, f in enumerate(IDX_FILES)]
        return "\n".join([
            "Expected layout (torchvision's, as read with download=False):",
            f"  {root}/",
            f"  └── {self.folder}/",
            "      └── raw/",
            *files,
            "  torchvision itself needs these four uncompressed files; rdbench also reads the downloaded .gz",
            f"  files (<name>.gz) and the four files directly in {root}/.",
        ])  # fmt: skip

    def idx_files(self, root: Path) -> dict[str, Path]:
        """The four IDX files under ``root``: torchvision's layout, else flat in ``root``."""
        raw = root / self.folder / "raw"
        found_raw, missing_raw = _idx_folder_files(raw)
        if not missing_raw:
            return found_raw
        found_flat, missing_flat = _idx_folder_files(root)
        if not missing_flat:
            return found_flat
        # report against the layout the user seems to have tried: the flat one if it has some of the files
        folder, missing = (root, missing_flat) if found_flat and not found_raw else (raw, missing_raw)
        raise self.error(f"missing {self.title} file(s) {', '.join(missing)} (uncompressed or .gz) in", folder,
                         f"put the four IDX files (uncompressed or .gz) in {raw}/. {self.download_hint}",
                         root)  # fmt: skip

    def check_layout(self, root: Path) -> None:
        self.idx_files(root)

    def data_files(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> list[Path]:
        return sorted(self.idx_files(root).values())  # both splits are read whatever the class

    def read_arrays(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        files = self.idx_files(root)
        prefix = "train" if train else "t10k"
        img_path, lab_path = files[f"{prefix}-images-idx3-ubyte"], files[f"{prefix}-labels-idx1-ubyte"]
        images, labels = read_idx_file(img_path, read_image_file), read_idx_file(lab_path, read_label_file)
        if len(labels) != len(images):
            raise DatasetError(f"{lab_path} holds {len(labels)} labels, expected {len(images)} uint8 labels (one "
                               f"per image of {img_path})\nFix: re-download the files.")  # fmt: skip
        return images, labels.astype(np.int64, copy=False)
