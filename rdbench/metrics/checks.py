"""Input validation shared by the metrics: finite scores, binary masks, both classes present, map/mask shapes."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["both_classes", "maps_and_masks", "to_binary", "to_finite"]


def to_finite(name: str, a: ArrayLike) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        n_nan = int(np.isnan(a).sum())
        raise ValueError(f"{name} must be finite; found {n_nan} NaN and {int(bad.sum()) - n_nan} inf values")
    return a


def to_binary(name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype == bool:
        return a
    ok = (a == 0) | (a == 1)
    if not ok.all():
        found = np.unique(a[~ok])
        more = f" (and {found.size - 10} more)" if found.size > 10 else ""
        raise ValueError(f"{name} must be binary (0/1); found other values {found[:10].tolist()}{more}")
    return a == 1


def both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        raise ValueError(f"no anomalous {what} (all ground truth is 0): the metric is undefined")
    if n_pos == y.size:
        raise ValueError(f"no normal {what} (all ground truth is 1): the metric is undefined")


def maps_and_masks(masks: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m, a = np.asarray(masks), np.asarray(maps)
    if m.shape != a.shape:
        raise ValueError(f"masks and maps must have the same shape; got masks {m.shape} and maps {a.shape}")
    if m.ndim not in (2, 3):
        raise ValueError(f"masks/maps must be N x H x W or H x W; got a {m.ndim}-D shape {m.shape}")
    if m.ndim == 2:
        m, a = m[None], a[None]
    return to_binary("masks", m), to_finite("maps", a)

