"""Model + test set -> anomaly maps, scores and the four metrics (batched, on the run's device)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rdbench import metrics
from rdbench.device import synchronize
from rdbench.models.rd import RDModel
from rdbench.scoring import anomaly_maps, gaussian_blur, image_scores
from rdbench.train import select_layers


@dataclass
class EvalResult:
    metrics: dict[str, float]
    scores: list[float]
    labels: list[int]
    paths: list[str]
    defects: list[str]
    seconds: float
    images_per_second: float
    maps: np.ndarray | None = field(default=None, repr=False)  # N x H x W smoothed maps, float32
    masks: np.ndarray | None = field(default=None, repr=False)
    metric_errors: dict[str, str] = field(default_factory=dict)  # metric -> why it is None


@torch.inference_mode()
def predict_maps(model: RDModel, images: torch.Tensor, layers: tuple[int, ...], sigma: float) -> torch.Tensor:
    """Smoothed anomaly maps for a batch of normalised images (N x 3 x S x S) -> N x S x S."""
    t = model.teacher(images)
    s = model.student(t)
    raw = anomaly_maps(select_layers(t, layers), select_layers(s, layers), images.shape[-2:],
                       layers=tuple(range(1, len(layers) + 1)))
    return gaussian_blur(raw, sigma)


def evaluate(model: RDModel, dataset: Dataset, layers: tuple[int, ...], sigma: float, device: torch.device,
             batch_size: int = 16, keep_maps: bool = False) -> EvalResult:
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    maps, masks, labels, paths, defects = [], [], [], [], []
    synchronize(device)
    t0 = time.perf_counter()
    for batch in loader:
        m = predict_maps(model, batch.image.to(device), layers, sigma)
        maps.append(m.float().cpu())
        masks.append(batch.mask[:, 0].to(torch.uint8))
        labels += [int(v) for v in batch.label]
        paths += list(batch.path)
        defects += list(batch.defect)
    synchronize(device)
    seconds = time.perf_counter() - t0
    all_maps = torch.cat(maps).numpy()
    all_masks = torch.cat(masks).numpy()
    scores = image_scores(torch.from_numpy(all_maps)).numpy()
    # Each metric on its own: one that cannot be computed (e.g. defects that vanish when the masks
    # are resized) is None with its reason, and the others and the per-image scores are kept.
    todo = {
        "image_auroc": lambda: metrics.image_auroc(np.asarray(labels), scores),
        "pixel_auroc": lambda: metrics.pixel_auroc(all_masks, all_maps),
        # MVTec's definition applied at the evaluation resolution, like every other metric here
        "pro_mvtec": lambda: metrics.pro_auc(all_masks, all_maps, variant="mvtec"),
        "pro_rd4ad": lambda: metrics.pro_auc(all_masks, all_maps, variant="rd4ad"),
    }
    result: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, fn in todo.items():
        try:
            result[name] = fn()
        except ValueError as exc:
            result[name], errors[name] = None, str(exc)
    return EvalResult(result, [float(s) for s in scores], labels, paths, defects, seconds,
                      len(labels) / seconds if seconds > 0 else float("nan"),
                      all_maps if keep_maps else None, all_masks if keep_maps else None, errors)
