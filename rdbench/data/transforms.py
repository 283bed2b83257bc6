"""The RD4AD authors' preprocessing (``dataset.get_data_transforms`` in hq-deng/RD4AD), reproduced exactly.

Images: RGB -> ``Resize((S, S))`` (PIL bilinear with antialias, the torchvision default) -> ``ToTensor`` ->
ImageNet normalisation. Masks: the authors open them as stored (``Image.open(gt)``, no ``convert``), so the
mode decides how PIL resizes them, and binarise at 0.5 at evaluation time (``gt[gt > 0.5] = 1``); we do it
once here so every consumer sees {0, 1} masks. Per mode (tests/test_mvtec_data.py checks each against the
authors' ``gt_transform``):

* ``'L'`` (MVTec AD's masks): bilinear resize, then > 0.5, exactly theirs.
* ``'1'`` and ``'P'``: PIL resizes these modes nearest whatever filter is asked for, so a thin defect keeps
  its pixels (a 1 px diagonal line drawn at 256 px keeps 50 pixels at 128 px; bilinear and > 0.5 keep 0).
  rdbench resizes them nearest too. A ``'P'`` pixel is a defect when its palette colour is not black: the
  authors' ``ToTensor`` reads palette *indices* / 255, so a mask whose defect colour sits at index 1 (the
  usual palette mask) is empty for their code (their ``compute_pro`` then fails its {0, 1} assertion); for
  black/white palettes at indices 0/255 both readings agree. A deliberate deviation, docs/parity.md.
* RGB(A) and 16/32-bit masks, which the authors' pipeline cannot evaluate (three channels; integer tensors
  ``ToTensor`` does not scale): grey = the largest channel (a pure red defect counts; alpha dropped), wide
  modes scaled by the mask's own maximum (0/1, 0/255 and 0/65535 masks mean the same), then as ``'L'``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as T

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
MASK_THRESHOLD = 0.5

# 16/32-bit integer and float modes: PIL's convert("RGB"/"L") clips them instead of rescaling.
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    arr = np.asarray(img, dtype=np.float64)
    hi = 65535.0 if img.mode.startswith("I;16") else max(float(arr.max()), 1.0)
    return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def to_rgb(img: Image.Image) -> Image.Image:
    """Grayscale, palette, RGBA -> RGB. Alpha is dropped, as the authors' ``convert('RGB')`` does."""
    if img.mode == "RGB":
        return img
    if img.mode in _WIDE_MODES:
        img = _to_8bit_gray(img)
    return img.convert("RGB")


NEAREST_MASK_MODES = ("1", "P", "PA")  # modes PIL resizes nearest whatever filter is asked for


def to_gray(img: Image.Image) -> Image.Image:
    """A mask of a bilinear mode -> 8-bit single channel (see the module docstring for each mode)."""
    if img.mode == "L":
        return img
    if img.mode in _WIDE_MODES:
        arr = np.asarray(img, dtype=np.float64)
        hi = max(float(arr.max()), 1e-12)  # the mask's own maximum: a 0/1 mask is as binary as a 0/65535 one
        return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    if img.mode == "LA":
        return img.getchannel("L")
    return Image.fromarray(np.asarray(img.convert("RGB")).max(axis=2), mode="L")  # alpha dropped


def binary_nearest_mask(img: Image.Image, size: int) -> torch.Tensor:
    """A '1'/'P' mask -> 1 x size x size {0, 1}: a pixel is a defect when its colour is not black, resized
    nearest as PIL resizes these modes (a pointwise map first, then nearest: the same as the other order)."""
    defect = np.asarray(img.convert("RGB")).max(axis=2) > 0
    small = Image.fromarray(defect.astype(np.uint8) * 255, mode="L").resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(small) > 0).to(torch.float32)[None]


def full_resolution_mask(img: Image.Image) -> np.ndarray:
    """A mask at its own size -> H x W bool, read as ``mask_transform`` reads each mode, without the resize (what
    MVTec's evaluation script compares the upsampled maps with)."""
    if img.mode in NEAREST_MASK_MODES:
        return np.asarray(img.convert("RGB")).max(axis=2) > 0
    return np.asarray(to_gray(img), dtype=np.float32) / 255.0 > MASK_THRESHOLD


def binarize(mask: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
    # the threshold is read when called (None: MASK_THRESHOLD), so that one constant rules every mask reader
    return (mask > (MASK_THRESHOLD if threshold is None else threshold)).to(torch.float32)


def image_transform(size: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL image (any mode) -> float tensor 3 x size x size, ImageNet-normalised."""
    return T.Compose(
        [
            T.Lambda(to_rgb),
            T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def mask_transform(size: int) -> Callable[[Image.Image], torch.Tensor]:
    """PIL mask (any mode) -> float tensor 1 x size x size with values in {0, 1}, resized as the authors'
    pipeline resizes that mode (module docstring)."""
    bilinear = T.Compose(
        [
            T.Lambda(to_gray),
            T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Lambda(binarize),
        ]
    )

    def transform(img: Image.Image) -> torch.Tensor:
        return binary_nearest_mask(img, size) if img.mode in NEAREST_MASK_MODES else bilinear(img)

    return transform


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Inverse of the image normalisation (for plots): (..., 3, H, W) -> values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)
