"""CIFAR-10 as a novelty dataset: the extracted ``cifar-10-python.tar.gz`` (``<root>/cifar-10-batches-py/``),
parsed by torchvision's ``CIFAR10`` class, whose md5 check of every batch file stays on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torchvision import datasets as tvd
from torchvision.datasets.utils import calculate_md5

from rdbench.data.novelty.base import SplitSource, register

CIFAR_FOLDER = tvd.CIFAR10.base_folder  # cifar-10-batches-py


@register
class CIFAR10Source(SplitSource):
    name = "cifar10"
    title = "CIFAR10"
    folder = CIFAR_FOLDER
    class_names = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    torchvision_class = tvd.CIFAR10
    download_hint = ("`rdbench fetch cifar10` downloads, checks and extracts it (into data/novelty: pass that as "
                     "--novelty-root); offline, extract cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/"
                     "cifar.html) in the root. A run itself never downloads.")  # fmt: skip

    def expected_tree(self, root: str | Path = "<root>") -> str:
        return "\n".join([
            "Expected layout (torchvision's, as read with download=False):",
            f"  {root}/",
            f"  └── {CIFAR_FOLDER}/",
            "      ├── batches.meta",
            "      ├── data_batch_1 ... data_batch_5",
            "      └── test_batch",
            "  (the extracted cifar-10-python.tar.gz, https://www.cs.toronto.edu/~kriz/cifar.html)",
        ])  # fmt: skip

    def file_md5s(self) -> dict[str, str]:
        """File name -> md5, from torchvision's class at call time (the tests swap in their fakes' hashes)."""
        reader = self.torchvision_class
        files = dict(reader.train_list + reader.test_list)
        files[reader.meta["filename"]] = reader.meta["md5"]
        return files

    def check_layout(self, root: Path) -> None:
        folder = root / CIFAR_FOLDER
        if not folder.is_dir():
            hint = ""
            if (root / "data_batch_1").is_file():
                hint = f" The root itself looks like the {CIFAR_FOLDER} folder; pass its parent {root.parent} as root."
            raise self.error("CIFAR-10 folder not found", folder, self.download_hint + hint, root)
        missing = [f for f in self.file_md5s() if not (folder / f).is_file()]
        if missing:
            raise self.error(f"missing CIFAR-10 file(s) {', '.join(missing)} in", folder,
                             f"re-extract cifar-10-python.tar.gz. {self.download_hint}", root)  # fmt: skip

    def data_files(self, root: Path, normal_class: int, split_seed: int = 0, test_fraction: float = 0.2) -> list[Path]:
        return sorted(root / CIFAR_FOLDER / f for f in self.file_md5s())

    def read_arrays(self, root: Path, train: bool) -> tuple[np.ndarray, np.ndarray]:
        folder = root / CIFAR_FOLDER
        try:
            ds = self.torchvision_class(str(root), train=train, download=False)
        except Exception as e:
            # torchvision says only "not found or corrupted": name the files whose md5 differs, else report
            # what failed (unpickling errors, wrong shapes, ...); hashing again costs only on this path
            md5s = {f: (calculate_md5(folder / f) if (folder / f).is_file() else "none: file missing", md5)
                    for f, md5 in self.file_md5s().items()}
            bad = [f"{f} (md5 {got}, expected {want})" for f, (got, want) in md5s.items()
                   if want is not None and got != want]
            if bad:
                raise self.error(f"CIFAR-10 file(s) {', '.join(bad)} fail torchvision's md5 check (corrupt, or not "
                                 "the official release) in", folder,
                                 f"re-extract cifar-10-python.tar.gz. {self.download_hint}", root) from e  # fmt: skip
            raise self.error(f"cannot read CIFAR-10 batches ({type(e).__name__}: {e}) in", folder,
                             "re-extract cifar-10-python.tar.gz.", root) from e  # fmt: skip
        return np.ascontiguousarray(ds.data), np.asarray(ds.targets, dtype=np.int64)
