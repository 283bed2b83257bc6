"""Anomaly maps, Gaussian smoothing equal to scipy's, image and novelty scores (batched, any device)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAUSSIAN_SIGMA = 4.0  # the authors' gaussian_filter(sigma=4)
GAUSSIAN_TRUNCATE = 4.0  # scipy's default: radius int(4*sigma + 0.5) = 16, i.e. 33 taps


def anomaly_maps(teacher: list[torch.Tensor], student: list[torch.Tensor], out_size: int | tuple[int, int],
                 layers: tuple[int, ...] = (1, 2, 3)) -> torch.Tensor:
    """Per layer 1 - channel cosine, bilinearly upsampled (align_corners=True) to ``out_size``, summed
    over the selected layers (1-based, as in the paper's Table 7). Returns N x H x W float64: the authors
    compute each layer's map in float32 and add them into a float64 numpy array (``cal_anomaly_map``), then
    smooth in float64; keeping that precision is what makes PRO's 200 thresholds cut the same pixels as
    their evaluation (tests/test_official_evaluation.py: 1e-6; summing in float32 moved PRO by 2.5e-6)."""
    size = (out_size, out_size) if isinstance(out_size, int) else tuple(out_size)
    total = None
    for layer in layers:
        t, s = teacher[layer - 1], student[layer - 1]
        m = (1 - F.cosine_similarity(t, s, dim=1)).unsqueeze(1)
        m = F.interpolate(m, size=size, mode="bilinear", align_corners=True)[:, 0].double()
        total = m if total is None else total + m
    if total is None:
        raise ValueError("layers must name at least one of 1, 2, 3")
    return total


def _gaussian_kernel(sigma: float, truncate: float, device, dtype) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(device=device, dtype=dtype)


def _symmetric_index(n: int, radius: int, device) -> torch.Tensor:
    # scipy mode='reflect' is the half-sample symmetric extension (d c b a | a b c d | d c b a),
    # periodic with period 2n, so it stays correct when the radius exceeds the image size.
    idx = torch.arange(-radius, n + radius, device=device) % (2 * n)
    return torch.where(idx >= n, 2 * n - 1 - idx, idx)


def gaussian_blur(maps: torch.Tensor, sigma: float = GAUSSIAN_SIGMA, truncate: float = GAUSSIAN_TRUNCATE
                  ) -> torch.Tensor:
    """Separable Gaussian on N x H x W maps, equal to ``scipy.ndimage.gaussian_filter(m, sigma)`` per
    map (mode 'reflect', truncate 4) up to float rounding; runs on the maps' device."""
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape N x H x W, got {tuple(maps.shape)}")
    if sigma <= 0:
        return maps
    radius = int(truncate * sigma + 0.5)
    k = _gaussian_kernel(sigma, truncate, maps.device, maps.dtype)
    n, h, w = maps.shape
    x = maps.index_select(1, _symmetric_index(h, radius, maps.device))
    x = F.conv2d(x.reshape(n, 1, h + 2 * radius, w), k.view(1, 1, -1, 1))
    x = x.reshape(n, h, w).index_select(2, _symmetric_index(w, radius, maps.device))
    x = F.conv2d(x.reshape(n, 1, h, w + 2 * radius), k.view(1, 1, 1, -1))
    return x.reshape(n, h, w)


def image_scores(maps: torch.Tensor) -> torch.Tensor:
    """The authors' detection score: the max of the smoothed map."""
    return maps.flatten(1).amax(dim=1)


def novelty_scores(maps: torch.Tensor) -> dict[str, torch.Tensor]:
    """Novelty detection (Table 4): the paper scores by the sum of the map; max is recorded too."""
    flat = maps.flatten(1)
    return {"sum": flat.sum(dim=1), "max": flat.amax(dim=1)}


def gaussian_taps(sigma: float = GAUSSIAN_SIGMA, truncate: float = GAUSSIAN_TRUNCATE) -> int:
    return 2 * int(truncate * sigma + 0.5) + 1 if sigma > 0 else 1


__all__ = ["anomaly_maps", "gaussian_blur", "image_scores", "novelty_scores", "gaussian_taps"]
