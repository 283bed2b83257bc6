"""FashionMNIST as a novelty dataset: MNIST's IDX format in torchvision's ``<root>/FashionMNIST/raw/`` layout,
and, when no root is given, Debian's ``/usr/share/datasets/fashion-mnist`` (package ``dataset-fashion-mnist``:
the four ``.gz`` files, read in place)."""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets as tvd

from rdbench.data.novelty.base import register
from rdbench.data.novelty.mnist import MNISTSource

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


@register
class FashionMNISTSource(MNISTSource):
    name = "fashionmnist"
    title = "FashionMNIST"
    folder = "FashionMNIST"
    class_names = tuple(tvd.FashionMNIST.classes)
    torchvision_class = tvd.FashionMNIST
    download_hint = ("Install the Debian package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) and "
                     "pass no root, or `rdbench fetch fashionmnist` (into data/novelty: pass that as --novelty-root), "
                     "or copy the FashionMNIST/raw/ folder of torchvision.datasets.FashionMNIST(root, download=True) "
                     "here. A run itself never downloads.")  # fmt: skip

    def expected_tree(self, root: str | Path = "<root>") -> str:
        return (super().expected_tree(root) + f"\n  Without a root: {DEBIAN_FASHION_MNIST}/<name>.gz for the four "
                "names (Debian package dataset-fashion-mnist).")  # fmt: skip

    def no_root(self) -> Path:
        debian = Path(DEBIAN_FASHION_MNIST)  # read at call time: tests point it elsewhere
        if not debian.is_dir():
            raise self.error("no data root given and the Debian FashionMNIST folder does not exist", debian,
                             self.download_hint)  # fmt: skip
        self.idx_files(debian)  # raises naming the missing files
        return debian
