"""Model + test set -> anomaly maps, scores and metrics (batched, on the run's device).

Two evaluations: localisation/detection on MVTec-style sets (maps and masks), and one-class novelty
detection (image scores only; the paper scores by the sum of the map, the max is recorded too).

Maps come from ``rdbench.engine.inference``: an inference-only copy of the model (batch norm folded, pixel-shuffle
upsampling, packed CPU convolutions) whose maps equal the trained model's within float rounding (~1e-6;
tests/test_inference.py). ``predict_maps`` is the plain computation, kept as the tests' oracle.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rdbench import metrics
from rdbench.engine.device import check_amp, synchronize
from rdbench.engine.inference import fast_predict, prepare_for_inference
from rdbench.engine.scoring import anomaly_maps, gaussian_blur, image_scores, novelty_scores
from rdbench.models.rd import RDModel, select_layers


@dataclass
class EvalResult:
    metrics: dict[str, float | None]
    per_image: dict[str, list]
    seconds: float
    images_per_second: float
    metric_errors: dict[str, str] = field(default_factory=dict)  # metric -> why it is None
    peak_memory_mb: float | None = None  # CUDA max_memory_allocated during evaluation; None on CPU
    maps: np.ndarray | None = field(default=None, repr=False)  # N x H x W smoothed maps, float32
    masks: np.ndarray | None = field(default=None, repr=False)

    @property
    def labels(self) -> list[int]:
        return self.per_image["label"]


@torch.inference_mode()
def predict_maps(model: RDModel, images: torch.Tensor, layers: tuple[int, ...], sigma: float) -> torch.Tensor:
    """Smoothed anomaly maps for a batch of normalised images (N x 3 x S x S) -> N x S x S."""
    t = model.teacher(images)
    s = model.student(t)
    raw = anomaly_maps(select_layers(t, layers), select_layers(s, layers), images.shape[-2:],
                       layers=tuple(range(1, len(layers) + 1)))
    return gaussian_blur(raw, sigma)


def collect_maps(model: RDModel, dataset: Dataset, layers: tuple[int, ...], sigma: float, device: torch.device,
                 batch_size: int = 16, amp: str = "none", fast: bool = True
                 ) -> tuple[np.ndarray, dict[str, list], float, float | None]:
    """Maps of every test item, the items' other fields (label, mask, path, ...) as lists, the seconds
    taken and the peak CUDA memory in MB (None on CPU). ``fast``: score with an inference-only copy of
    the model (``prepare_for_inference``; the model itself is left as it is, e.g. mid-training);
    ``amp``: "bf16"/"fp16" autocast of the networks (the maps are still computed in float32)."""
    amp = check_amp(amp, device)
    model.to(device).eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    maps: list[torch.Tensor] = []
    fields: dict[str, list] = {}
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    net = model
    if fast and not getattr(model, "rdbench_inference_only", False):
        # prepacked convolutions run float32 only, so an amp run keeps the other rewrites without them
        net = prepare_for_inference(model, device, prepack=False if amp != "none" else None)
    for batch in loader:
        maps.append(fast_predict(net, batch.image.to(device), layers, sigma, amp).cpu())
        for name in batch._fields:
            if name == "image":
                continue
            value = getattr(batch, name)
            fields.setdefault(name, []).extend(value if name == "mask" else [v.item() if torch.is_tensor(v)
                                                                               else v for v in value])
    del net
    synchronize(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return torch.cat(maps).numpy(), fields, seconds, peak


def _compute(todo: dict[str, Callable[[], float]]) -> tuple[dict[str, float | None], dict[str, str]]:
    # Each metric on its own: one that cannot be computed (e.g. defects that vanish when the masks
    # are resized) is None with its reason, and the others and the per-image scores are kept.
    result: dict[str, float | None] = {}
    errors: dict[str, str] = {}
    for name, fn in todo.items():
        try:
            result[name] = fn()
        except ValueError as exc:
            result[name], errors[name] = None, str(exc)
    return result, errors


def evaluate(model: RDModel, dataset: Dataset, layers: tuple[int, ...], sigma: float, device: torch.device,
             batch_size: int = 16, keep_maps: bool = False, amp: str = "none", fast: bool = True) -> EvalResult:
    """MVTec AD evaluation: image AUROC on max scores, pixel AUROC, both PRO variants. ``fast``: score with the
    inference copy (False: the model's own arithmetic, RunConfig.exact_eval)."""
    maps, items, seconds, peak = collect_maps(model, dataset, layers, sigma, device, batch_size, amp, fast)
    masks = torch.cat([m[None] for m in items.pop("mask")])[:, 0].to(torch.uint8).numpy()
    labels = np.asarray(items["label"])
    scores = image_scores(torch.from_numpy(maps)).numpy()
    result, errors = _compute({
        "image_auroc": lambda: metrics.image_auroc(labels, scores),
        "pixel_auroc": lambda: metrics.pixel_auroc(masks, maps),
        # MVTec's definition applied at the evaluation resolution, like every other metric here
        "pro_mvtec": lambda: metrics.pro_auc(masks, maps, variant="mvtec"),
        "pro_rd4ad": lambda: metrics.pro_auc(masks, maps, variant="rd4ad"),
    })
    per_image = {"path": items["path"], "defect": items["defect"], "label": items["label"],
                 "score": [float(s) for s in scores]}
    return EvalResult(result, per_image, seconds, len(labels) / seconds if seconds > 0 else float("nan"),
                      errors, peak, maps if keep_maps else None, masks if keep_maps else None)


def evaluate_novelty(model: RDModel, dataset: Dataset, layers: tuple[int, ...], sigma: float,
                     device: torch.device, batch_size: int = 16, keep_maps: bool = False,
                     amp: str = "none", fast: bool = True) -> EvalResult:
    """One-class novelty detection (Table 4): AUROC of the map's sum (the paper's score) and max."""
    maps, items, seconds, peak = collect_maps(model, dataset, layers, sigma, device, batch_size, amp, fast)
    labels = np.asarray(items["label"])
    s = novelty_scores(torch.from_numpy(maps))
    score_sum, score_max = s["sum"].numpy(), s["max"].numpy()
    result, errors = _compute({"auroc": lambda: metrics.image_auroc(labels, score_sum),
                               "auroc_max": lambda: metrics.image_auroc(labels, score_max)})
    per_image = {"label": items["label"], "target": items.get("target", []),
                 "score": [float(v) for v in score_sum], "score_max": [float(v) for v in score_max]}
    return EvalResult(result, per_image, seconds, len(labels) / seconds if seconds > 0 else float("nan"), errors,
                      peak, maps if keep_maps else None)
