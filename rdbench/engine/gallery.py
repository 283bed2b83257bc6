"""A few test images per run, kept in the record for the report's Fig. 6/7-style galleries.

Records must travel from Ray workers to the driver without a shared filesystem, so the pictures are
small PNGs embedded as base64: the input, the ground truth and the anomaly map (8-bit, with the map's
value range so the report can draw a colour bar)."""

from __future__ import annotations

import base64
import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from rdbench.data.transforms import denormalize

GALLERY_SIZE = 128  # px per picture: enough to see a defect, ~10 KB per PNG


def _png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _resize(t: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t[None].float(), size=(size, size), mode=mode, **kw)[0]


def pick(labels: list[int], scores: list[float], k: int = 4) -> list[int]:
    """Indices to show: the most, a median and the least anomalous-looking anomalous image, and the
    highest-scoring normal image (a look at false positives)."""
    order = np.argsort(scores, kind="stable")
    bad = [int(i) for i in order if labels[i] == 1]
    good = [int(i) for i in order if labels[i] == 0]
    chosen = []
    if bad:
        chosen += [bad[-1], bad[len(bad) // 2], bad[0]]
    if good:
        chosen.append(good[-1])
    return list(dict.fromkeys(chosen))[:k]


def make_gallery(test_set, maps: np.ndarray, labels: list[int], scores: list[float], k: int = 4,
                 size: int = GALLERY_SIZE) -> list[dict]:
    out = []
    for i in pick(labels, scores, k):
        item = test_set[i]
        rgb = denormalize(_resize(item.image, size, "bilinear"))
        m = torch.from_numpy(maps[i])
        lo, hi = float(m.min()), float(m.max())
        scaled = ((m - lo) / (hi - lo if hi > lo else 1.0)).clamp(0, 1)
        entry = {"index": i, "path": getattr(item, "path", str(i)), "label": int(labels[i]),
                 "score": float(scores[i]), "map_range": [lo, hi],
                 "image_png": _png((rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)),
                 "map_png": _png((_resize(scaled[None], size, "bilinear")[0].numpy() * 255).round().astype(np.uint8))}
        if getattr(item, "mask", None) is not None:
            mask = _resize(item.mask, size, "nearest")[0].numpy()
            entry["mask_png"] = _png((mask > 0.5).astype(np.uint8) * 255)
        out.append(entry)
    return out
