"""Model + test set -> anomaly maps, scores and metrics (batched, on the run's device).

Two evaluations: localisation/detection on MVTec-style sets (maps and masks), and one-class novelty
detection (image scores only; the paper scores by the sum of the map, the max is recorded too).

Maps come from ``rdbench.engine.inference``: an inference-only copy of the model (batch norm folded, pixel-shuffle
upsampling, packed CPU convolutions) whose maps equal the trained model's within float rounding (~1e-6;
tests/test_inference.py). ``predict_maps`` is the plain computation, kept as the tests' oracle.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from rdbench import metrics
from rdbench.engine.device import check_amp, synchronize
from rdbench.engine.inference import fast_predict, inference_options, prepare_for_inference
from rdbench.engine.scoring import anomaly_maps, gaussian_blur, image_scores, novelty_scores, sum_layers
from rdbench.models.rd import RDModel, select_layers

PAPER_METRICS = ("image_auroc", "pixel_auroc", "pro_mvtec", "pro_rd4ad")  # also per layer subset (Table 7)
INTERVAL_RESAMPLES = 1000  # the figure; 0.4 s per 100-image category (tests/benchmarks/bootstrap_cost.py)


@dataclass
class EvalResult:
    metrics: dict[str, float | None]
    per_image: dict[str, list]
    seconds: float
    images_per_second: float
    metric_errors: dict[str, str] = field(default_factory=dict)  # metric -> why it is None
    peak_memory_mb: float | None = None  # CUDA max_memory_allocated during evaluation; None on CPU
    maps: np.ndarray | None = field(default=None, repr=False)  # N x H x W smoothed maps, float64
    masks: np.ndarray | None = field(default=None, repr=False)
    # "1", "2,3", ...: the metrics of the map built from that subset of the run's layers (Table 7's M^k)
    metrics_by_layers: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # metric -> [low, high]: 95% bootstrap interval over the test images (final evaluation only)
    metrics_ci: dict[str, list[float]] = field(default_factory=dict)
    scores: metrics.ScoreSummary | None = field(default=None, repr=False)  # what intervals/comparisons need

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
                 batch_size: int = 16, amp: str = "none", fast: bool = True, keep_layers: bool = False
                 ) -> tuple[np.ndarray, dict[str, list], float, float | None]:
    """Maps of every test item, the items' other fields (label, mask, path, ...) as lists, the seconds
    taken and the peak CUDA memory in MB (None on CPU). ``fast``: score with an inference-only copy of
    the model (``prepare_for_inference``; the model itself is left as it is, e.g. mid-training);
    ``amp``: "bf16"/"fp16" autocast of the networks (the maps are still computed in float32);
    ``keep_layers``: the items' fields also hold ``layer_maps``, every item's per-layer raw maps (N x L x S x S
    float32 torch), for the layer-subset metrics."""
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
        net = prepare_for_inference(model, device, **inference_options(amp, device))
    per_layer: list[torch.Tensor] = []
    for batch in loader:
        out = fast_predict(net, batch.image.to(device), layers, sigma, amp, keep_layers=keep_layers)
        if keep_layers:
            out, raw = out
            per_layer.append(raw.cpu())
        maps.append(out.cpu())
        for name in batch._fields:
            if name == "image":
                continue
            value = getattr(batch, name)
            fields.setdefault(name, []).extend(value if name == "mask" else [v.item() if torch.is_tensor(v)
                                                                               else v for v in value])
    del net
    if keep_layers:
        fields["layer_maps"] = torch.cat(per_layer)
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


def _both(fn: Callable[[], tuple[float, float]]) -> tuple[Callable[[], float], Callable[[], float]]:
    """Two metrics computed together (one sort), as two entries of ``_compute``."""
    cache: list = []

    def get(i: int) -> float:
        if not cache:
            cache.append(fn())
        return cache[0][i]

    return (lambda: get(0)), (lambda: get(1))


def _mvtec_metrics(labels: np.ndarray, masks: np.ndarray, maps: np.ndarray, extended: bool = True,
                   full_masks: list[np.ndarray] | None = None) -> tuple[dict[str, float | None], dict[str, str]]:
    """The paper's metrics; ``extended``: also those current benchmarks report (AP, F1-max) and, with the
    masks at their own resolution, MVTec's PRO there (``pro_mvtec_full``, as MVTec's evaluation script)."""
    scores = image_scores(torch.from_numpy(maps)).numpy()
    todo: dict[str, Callable[[], float]] = {
        "image_auroc": lambda: metrics.image_auroc(labels, scores),
        "pixel_auroc": lambda: metrics.pixel_auroc(masks, maps),
        # MVTec's definition applied at the evaluation resolution, like every other metric here
        "pro_mvtec": lambda: metrics.pro_auc(masks, maps, variant="mvtec"),
        "pro_rd4ad": lambda: metrics.pro_auc(masks, maps, variant="rd4ad"),
    }
    if extended:
        todo["image_ap"], todo["image_f1_max"] = _both(lambda: metrics.image_ap_f1_max(labels, scores))
        todo["pixel_ap"], todo["pixel_f1_max"] = _both(lambda: metrics.pixel_ap_f1_max(masks, maps))
        if full_masks is not None:
            todo["pro_mvtec_full"] = lambda: metrics.pro_auc(full_masks, maps, variant="mvtec", resolution="mask")
    return _compute(todo)


def _intervals(labels: np.ndarray, scores: np.ndarray, masks: np.ndarray | None, maps: np.ndarray | None,
               names: dict[str, str] | None = None
               ) -> tuple[dict[str, list[float]], metrics.ScoreSummary | None, str | None]:
    """95% intervals (1,000 stratified resamples of the test images, seed 0: the same draw for every run of
    a category, so that two runs' intervals come from the same resampled sets) and the summary they came
    from; ``names`` renames the interval metrics to the record's. Never fails the run: (ci, summary, why not)."""
    try:
        summary = metrics.summarize(labels, scores, masks, maps)
        ci = metrics.bootstrap_intervals(summary, n_resamples=INTERVAL_RESAMPLES, seed=0)
    except ValueError as exc:
        return {}, None, str(exc)
    names = names or {m: m for m in ci}
    return {names[m]: [iv.low, iv.high] for m, iv in ci.items() if m in names}, summary, None


def layer_subsets(layers: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every non-empty subset of a run's layers, smallest first, in the run's order: (1,), (2,), (3,), (1, 2),
    (1, 3), (2, 3), (1, 2, 3) for the paper's model."""
    return [c for k in range(1, len(layers) + 1) for c in itertools.combinations(layers, k)]


def layers_key(subset: tuple[int, ...]) -> str:
    return ",".join(map(str, subset))


def metrics_by_layers(per_layer: torch.Tensor, layers: tuple[int, ...], sigma: float, labels: np.ndarray,
                      masks: np.ndarray, full: dict[str, float | None]) -> dict[str, dict[str, float | None]]:
    """The metrics of the map built from each non-empty subset of the run's layers (Table 7 read as the paper
    labels it, "Score Map M^k"): from the per-layer maps of one forward pass (N x L x H x W), summed in
    float64 and smoothed exactly as the run's own map, so the subset of all layers is the run's map itself and
    keeps its metrics (``full``)."""
    out: dict[str, dict[str, float | None]] = {}
    for subset in layer_subsets(layers):
        if subset == tuple(layers):
            out[layers_key(subset)] = {k: v for k, v in full.items() if k in PAPER_METRICS}
            continue
        which = tuple(layers.index(x) for x in subset)
        maps = torch.cat([gaussian_blur(sum_layers(chunk, which), sigma) for chunk in per_layer.split(32)]).numpy()
        out[layers_key(subset)] = _mvtec_metrics(labels, masks, maps, extended=False)[0]
    return out


def evaluate(model: RDModel, dataset: Dataset, layers: tuple[int, ...], sigma: float, device: torch.device,
             batch_size: int = 16, keep_maps: bool = False, amp: str = "none", fast: bool = True,
             final: bool = False) -> EvalResult:
    """MVTec AD evaluation: image AUROC on max scores, pixel AUROC, both PRO variants, AP and F1-max. ``fast``:
    score with the inference copy (False: the model's own arithmetic, RunConfig.exact_eval). ``final`` (a run's
    last evaluation, not a point of its curve): also every layer subset's metrics (``metrics_by_layers``; a run
    of more than one layer), MVTec's PRO at the masks' own resolution (a dataset with ``full_masks()``) and the
    95% intervals (``metrics_ci``) with the summary they came from."""
    by_layers = final and len(layers) > 1
    maps, items, seconds, peak = collect_maps(model, dataset, layers, sigma, device, batch_size, amp, fast,
                                              keep_layers=by_layers)
    masks = torch.cat([m[None] for m in items.pop("mask")])[:, 0].to(torch.uint8).numpy()
    labels = np.asarray(items["label"])
    scores = image_scores(torch.from_numpy(maps)).numpy()
    full = dataset.full_masks() if final and hasattr(dataset, "full_masks") else None
    result, errors = _mvtec_metrics(labels, masks, maps, full_masks=full)
    subsets = (metrics_by_layers(items.pop("layer_maps"), tuple(layers), sigma, labels, masks, result)
               if by_layers else {})
    ci, summary, why = _intervals(labels, scores, masks, maps) if final else ({}, None, None)
    if why:
        errors["metrics_ci"] = why
    per_image = {"path": items["path"], "defect": items["defect"], "label": items["label"],
                 "score": [float(s) for s in scores]}
    return EvalResult(result, per_image, seconds, len(labels) / seconds if seconds > 0 else float("nan"),
                      errors, peak, maps if keep_maps else None, masks if keep_maps else None, subsets, ci, summary)


def evaluate_novelty(model: RDModel, dataset: Dataset, layers: tuple[int, ...], sigma: float,
                     device: torch.device, batch_size: int = 16, keep_maps: bool = False,
                     amp: str = "none", fast: bool = True, final: bool = False) -> EvalResult:
    """One-class novelty detection (Table 4): AUROC of the map's sum (the paper's score) and max, AP and F1-max of
    the sum; ``final``: with the 95% intervals of the sum's metrics."""
    maps, items, seconds, peak = collect_maps(model, dataset, layers, sigma, device, batch_size, amp, fast)
    labels = np.asarray(items["label"])
    s = novelty_scores(torch.from_numpy(maps))
    score_sum, score_max = s["sum"].numpy(), s["max"].numpy()
    todo: dict[str, Callable[[], float]] = {"auroc": lambda: metrics.image_auroc(labels, score_sum),
                                            "auroc_max": lambda: metrics.image_auroc(labels, score_max)}
    todo["ap"], todo["f1_max"] = _both(lambda: metrics.image_ap_f1_max(labels, score_sum))
    result, errors = _compute(todo)
    ci, summary, why = (_intervals(labels, score_sum, None, None, NOVELTY_INTERVALS) if final
                        else ({}, None, None))
    if why:
        errors["metrics_ci"] = why
    per_image = {"label": items["label"], "target": items.get("target", []),
                 "score": [float(v) for v in score_sum], "score_max": [float(v) for v in score_max]}
    return EvalResult(result, per_image, seconds, len(labels) / seconds if seconds > 0 else float("nan"), errors,
                      peak, maps if keep_maps else None, None, {}, ci, summary)


# the interval metrics of an image-only summary -> the novelty record's names (the sum score's)
NOVELTY_INTERVALS = {"image_auroc": "auroc", "image_ap": "ap", "image_f1_max": "f1_max"}
