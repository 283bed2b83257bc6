"""The RD4AD authors' preprocessing (``dataset.get_data_transforms`` in hq-deng/RD4AD), reproduced exactly.

Images: RGB -> ``Resize((S, S))`` (PIL bilinear with antialias, the torchvision default) -> ``ToTensor`` ->
ImageNet normalisation. Masks: ``Resize((S, S))`` on the 8-bit mask -> ``ToTensor`` -> binarised at 0.5,
which the authors do at evaluation time (``gt[gt > 0.5] = 1; gt[gt <= 0.5] = 0``); we do it once here so
every consumer sees {0, 1} masks.
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


def to_gray(img: Image.Image) -> Image.Image:
    """Masks -> 8-bit single channel (MVTec masks are already 'L'; RGB/RGBA/1-bit masks appear elsewhere)."""
    if img.mode == "L":
        return img
    if img.mode in _WIDE_MODES:
        return _to_8bit_gray(img)
    if img.mode in ("RGBA", "LA", "PA"):
        img = img.convert("RGB")  # don't let a transparent background count as foreground
    return img.convert("L")


def binarize(mask: torch.Tensor, threshold: float = MASK_THRESHOLD) -> torch.Tensor:
    return (mask > threshold).to(torch.float32)


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
    """PIL mask (any mode) -> float tensor 1 x size x size with values in {0, 1}."""
    return T.Compose(
        [
            T.Lambda(to_gray),
            T.Resize((size, size), interpolation=T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Lambda(binarize),
        ]
    )


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Inverse of the image normalisation (for plots): (..., 3, H, W) -> values in [0, 1]."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)
