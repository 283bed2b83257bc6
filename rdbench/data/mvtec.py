"""MVTec AD layout: validation with actionable errors, and the train / test datasets.

Layout (any category name; the synthetic set uses its own)::

    <root>/<category>/train/good/*.png
    <root>/<category>/test/<defect>/*.png              defect 'good' = normal
    <root>/<category>/ground_truth/<defect>/<name>_mask.png

Layout problems raise :class:`DatasetError` when a dataset is built (cheap checks: existence, masks present);
corrupt files and image/mask size mismatches raise it when the sample is loaded (or up front with
``check_category(..., deep=True)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from rdbench.data.transforms import full_resolution_mask, image_transform, mask_transform
from rdbench.registry import Registry

MVTEC_TEXTURES: tuple[str, ...] = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS: tuple[str, ...] = (
    "bottle", "cable", "capsule", "hazelnut", "metal_nut",
    "pill", "screw", "toothbrush", "transistor", "zipper",
)  # fmt: skip
MVTEC_CATEGORIES: tuple[str, ...] = MVTEC_TEXTURES + MVTEC_OBJECTS
# Training images per category (the MVTec AD paper's Table 1): cost estimates of sweeps only.
MVTEC_TRAIN_COUNTS: dict[str, int] = {
    "carpet": 280, "grid": 264, "leather": 245, "tile": 230, "wood": 247, "bottle": 209, "cable": 224,
    "capsule": 219, "hazelnut": 391, "metal_nut": 220, "pill": 267, "screw": 320, "toothbrush": 60,
    "transistor": 213, "zipper": 240,
}  # fmt: skip

# name -> "texture" | "object"; protocols look categories up here, so a typo lists the valid names.
CATEGORIES: Registry[str] = Registry("dataset category")
for _name in MVTEC_TEXTURES:
    CATEGORIES.add(_name, "texture")
for _name in MVTEC_OBJECTS:
    CATEGORIES.add(_name, "object")

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL = "good"


class DatasetError(ValueError):
    """A dataset on disk does not match the expected layout, or one of its files cannot be read."""


def expected_layout(root: str | Path = "<root>", category: str = "<category>") -> str:
    return (
        f"Expected layout:\n"
        f"  {root}/\n"
        f"  └── {category}/\n"
        f"      ├── train/good/*.png                        normal training images\n"
        f"      ├── test/good/*.png                         normal test images\n"
        f"      ├── test/<defect>/*.png                     anomalous test images\n"
        f"      └── ground_truth/<defect>/<name>_mask.png   one mask per anomalous test image\n"
        f"  (extensions: {' '.join(IMAGE_EXTENSIONS)}, any case)"
    )


def _error(problem: str, path: Path, fix: str, root: Path | str = "<root>", category: str = "<category>"):
    return DatasetError(f"{problem}: {path}\n{expected_layout(root, category)}\nFix: {fix}")


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name (hidden files such as ._foo.png skipped)."""
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )  # fmt: skip


@dataclass(frozen=True)
class TestSample:
    __test__ = False  # not a pytest test class

    path: Path
    mask_path: Path | None  # None for normal images
    defect: str

    @property
    def label(self) -> int:
        return 0 if self.defect == NORMAL else 1


@dataclass(frozen=True)
class CategoryFiles:
    root: Path
    category: str
    train: list[Path]
    test: list[TestSample]

    @property
    def defects(self) -> list[str]:
        return sorted({s.defect for s in self.test if s.defect != NORMAL})


def _find_mask(gt_dir: Path, stem: str) -> Path | None:
    if not gt_dir.is_dir():
        return None
    by_name = {p.name.lower(): p for p in gt_dir.iterdir() if p.is_file()}
    # MVTec names masks <name>_mask.png; also accept same-name masks (common in converted datasets).
    for suffix in ("_mask", ""):
        for ext in IMAGE_EXTENSIONS:
            if (hit := by_name.get(f"{stem}{suffix}{ext}".lower())) is not None:
                return hit
    return None


def check_category(root: str | Path, category: str, deep: bool = False) -> CategoryFiles:
    """Validate ``<root>/<category>`` and list its files (sorted). ``deep`` also decodes every image/mask."""
    root = Path(root).expanduser()
    err = lambda problem, path, fix: _error(problem, path, fix, root, category)  # noqa: E731
    if not root.is_dir():
        raise err("dataset root does not exist", root,
                  "pass the folder that contains the category folders (e.g. .../mvtec_anomaly_detection), "
                  "or create a synthetic set with rdbench.data.synthetic.make_synthetic(root).")  # fmt: skip
    cat_dir = root / category
    if not cat_dir.is_dir():
        present = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        hint = ""
        if (root / "train").is_dir():
            hint = f" The root itself looks like a category folder; pass its parent {root.parent} as root."
        raise err("category folder not found", cat_dir,
                  f"categories present under {root}: {', '.join(present) or '(none)'}.{hint}")  # fmt: skip

    train_dir = cat_dir / "train" / NORMAL
    if not train_dir.is_dir():
        raise err("training folder not found", train_dir, "put the normal training images in train/good/.")
    train = list_images(train_dir)
    if not train:
        raise err("no training images in", train_dir,
                  f"train/good/ must hold at least one image ({' '.join(IMAGE_EXTENSIONS)}).")  # fmt: skip

    test_dir = cat_dir / "test"
    if not test_dir.is_dir():
        raise err("test folder not found", test_dir, "put test images in test/good/ and test/<defect>/.")
    test: list[TestSample] = []
    missing: list[tuple[Path, Path]] = []
    for defect_dir in sorted(p for p in test_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        defect = defect_dir.name
        gt_dir = cat_dir / "ground_truth" / defect
        for img in list_images(defect_dir):
            mask = None
            if defect != NORMAL:
                mask = _find_mask(gt_dir, img.stem)
                if mask is None:
                    missing.append((img, gt_dir / f"{img.stem}_mask.png"))
            test.append(TestSample(img, mask, defect))
    if not test:
        raise err("no test images in", test_dir, "put test images in test/good/ and test/<defect>/.")
    if missing:
        listing = "\n".join(f"  {img} -> expected {mask}" for img, mask in missing[:5])
        more = f"\n  ... and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise err(f"{len(missing)} anomalous test image(s) without a mask, first", missing[0][0],
                  f"add the masks (white = defect, same size as the image):\n{listing}{more}")  # fmt: skip
    used = {s.mask_path.resolve() for s in test if s.mask_path is not None}
    gt_root = cat_dir / "ground_truth"
    gt_dirs = [d for d in sorted(gt_root.iterdir()) if d.is_dir()] if gt_root.is_dir() else []
    orphans = [m for d in gt_dirs for m in list_images(d) if m.resolve() not in used]
    if orphans:
        # a mask whose image is missing usually means a half-copied dataset: the metrics would be wrong
        listing = "\n".join(f"  {m}" for m in orphans[:5]) + (f"\n  ... and {len(orphans) - 5} more"
                                                               if len(orphans) > 5 else "")
        raise err(f"{len(orphans)} mask(s) without a test image, first", orphans[0],
                  f"restore the test images test/<defect>/<name>.png for these masks, or remove the masks:\n{listing}")
    files = CategoryFiles(root, category, train, test)
    if deep:
        for path in train:
            load_image(path)
        for s in test:
            img = load_image(s.path)
            if s.mask_path is not None:
                _check_sizes(s, img, load_image(s.mask_path))
    return files


def load_image(path: Path) -> Image.Image:
    """Open and fully decode ``path``; PIL errors become a DatasetError naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except Exception as e:  # UnidentifiedImageError, truncated files (OSError), decompression bombs, ...
        raise DatasetError(
            f"cannot read image file: {path}\n  ({type(e).__name__}: {e})\n"
            "Fix: the file is corrupt or not an image; re-download/re-extract the dataset or delete it."
        ) from e


def _check_sizes(sample: TestSample, img: Image.Image, mask: Image.Image) -> None:
    if img.size != mask.size:
        raise DatasetError(
            f"mask size {mask.size[0]}x{mask.size[1]} differs from image size {img.size[0]}x{img.size[1]}:\n"
            f"  mask:  {sample.mask_path}\n  image: {sample.path}\n"
            f"Fix: masks must be pixel-aligned with their image; regenerate or replace the mask."
        )


class MVTecTrain(Dataset):
    """Normal training images of one category -> float tensor 3 x S x S (ImageNet-normalised)."""

    def __init__(self, root: str | Path, category: str, image_size: int = 256):
        self.files = check_category(root, category)
        self.paths: list[Path] = self.files.train
        self.transform = image_transform(image_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(load_image(self.paths[i]))


class TestItem(NamedTuple):
    """One test sample. A NamedTuple so it unpacks like the authors' tuples and default_collate batches it."""

    __test__ = False  # not a pytest test class

    image: torch.Tensor  # 3 x S x S, ImageNet-normalised
    mask: torch.Tensor  # 1 x S x S, float {0, 1}; all zeros for normal images
    label: int  # 0 normal, 1 anomalous
    defect: str  # test sub-folder name ('good' for normal)
    path: str  # relative to root, posix: '<category>/test/<defect>/<file>'


class MVTecTest(Dataset):
    """Test images of one category, sorted by (defect folder, file name)."""

    def __init__(self, root: str | Path, category: str, image_size: int = 256):
        self.files = check_category(root, category)
        self.samples: list[TestSample] = self.files.test
        self.image_size = image_size
        self.transform = image_transform(image_size)
        self.mask_transform = mask_transform(image_size)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def labels(self) -> list[int]:
        return [s.label for s in self.samples]

    def full_masks(self) -> list[np.ndarray]:
        """Every test image's mask at the image's own size (H x W bool; all False for normal images), for
        metrics at full resolution (MVTec's evaluation script)."""
        out = []
        for s in self.samples:
            if s.mask_path is None:
                with Image.open(s.path) as im:  # the header is enough for the size
                    w, h = im.size
                out.append(np.zeros((h, w), dtype=bool))
            else:
                out.append(full_resolution_mask(load_image(s.mask_path)))
        return out

    def __getitem__(self, i: int) -> TestItem:
        s = self.samples[i]
        img = load_image(s.path)
        if s.mask_path is None:
            mask = torch.zeros(1, self.image_size, self.image_size)
        else:
            raw = load_image(s.mask_path)
            _check_sizes(s, img, raw)
            mask = self.mask_transform(raw)
        rel = s.path.relative_to(self.files.root).as_posix()
        return TestItem(self.transform(img), mask, s.label, s.defect, rel)
