"""The figure groups of ``rdbench profile`` (``rdbench.perf.profile``): inference (latency, throughput,
parameter memory), the fast-vs-reference map agreement, the amp effect, peak memory and training, each
measured on a ``Session`` holding the device, the settings and both models, with the helpers they share."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from rdbench.config import RunConfig
from rdbench.engine.device import AMP_DTYPES, synchronize
from rdbench.engine.inference import cpu_micro_batch, fast_predict, prepare_for_inference, unused_modules
from rdbench.models.rd import RDModel, build_rd_model
from rdbench.perf.memory import measure_peak_memory

__all__ = ["FIGURE_KEYS", "RandomImages", "Session", "inference_figures", "measure_agreement", "measure_amp_effect",
           "memory_figures", "training_figures"]

FIGURE_KEYS = ("latency_ms", "throughput_ips", "peak_memory_mb", "process_peak_memory_mb", "param_memory_mb",
               "train_throughput_ips", "train_first_epoch_ips")


class RandomImages(Dataset):
    """Random normalised-looking training images (the content does not change the cost)."""

    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.images = torch.randn(n, 3, size, size, generator=g)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def _bytes_mb(tensors) -> float:
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def _figure(value: float | None, unit: str, description: str, device: str, samples: list[float] | None = None,
            note: str | None = None) -> dict:
    fig: dict = {"value": value, "unit": unit, "description": description, "device": device}
    if samples is not None:
        fig["samples"] = samples
    if note:
        fig["note"] = note
    return fig


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _epoch_times(run: Callable[[Callable[[int, float], None]], object], device: torch.device) -> list[float]:
    stamps: list[float] = []

    def on_epoch(epoch: int, loss: float) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())

    synchronize(device)
    t0 = time.perf_counter()
    run(on_epoch)
    return [float(t) for t in np.diff([t0, *stamps])]


@dataclass
class Session:
    """What every step of a profile shares: the device, the settings and both models."""
    dev: torch.device
    name: str  # the device's name, stamped on every figure
    backbone: str
    image_size: int
    batch_size: int
    weights: str
    repeats: int
    warmup: int
    layers: tuple[int, ...]
    sigma: float
    amp: str | None
    seed: int
    options: dict  # prepare_for_inference's keyword arguments
    model: RDModel  # as built (the training-time modules)
    fast_model: RDModel  # prepared for inference
    ref_model: torch.nn.Module | None  # the authors' model, or None without reference

    @property
    def cuda(self) -> bool:
        return self.dev.type == "cuda"

    @property
    def what(self) -> str:
        return f"{self.backbone} {self.image_size}x{self.image_size}, weights={self.weights}"


def inference_figures(s: Session, fast: dict, ref: dict) -> None:
    """Batch-1 latency (fast and reference interleaved), batch-N throughput, parameter memory."""
    from rdbench.perf.reference import reference_predict

    g = torch.Generator().manual_seed(s.seed + 1)
    x1 = torch.randn(1, 3, s.image_size, s.image_size, generator=g).to(s.dev)
    xn = torch.randn(s.batch_size, 3, s.image_size, s.image_size, generator=g).to(s.dev)

    def fast_one() -> None:
        fast_predict(s.fast_model, x1, s.layers, s.sigma, s.amp).amax(dim=(1, 2)).cpu()

    def ref_one() -> None:
        reference_predict(s.ref_model, x1, s.layers, s.sigma).max()

    def fast_batch() -> None:
        fast_predict(s.fast_model, xn, s.layers, s.sigma, s.amp).amax(dim=(1, 2)).cpu()

    for _ in range(s.warmup):
        fast_one()
        if s.ref_model is not None:
            ref_one()
    lat_fast, lat_ref = [], []
    for _ in range(s.repeats):
        lat_fast.append(_timed(fast_one, s.dev) * 1000)
        if s.ref_model is not None:
            lat_ref.append(_timed(ref_one, s.dev) * 1000)
    for _ in range(s.warmup):
        fast_batch()
    thr_fast = [s.batch_size / _timed(fast_batch, s.dev) for _ in range(s.repeats)]

    sync = "torch.cuda.synchronize before and after every timed call" if s.cuda else "wall clock"
    micro = ""
    if not s.cuda:
        mb = cpu_micro_batch(s.fast_model, (s.image_size, s.image_size))
        micro = f" (on the CPU in micro-batches of {mb}, see cpu_micro_batch)" if mb < s.batch_size else ""
    fast["latency_ms"] = _figure(
        _median(lat_fast), "ms/image",
        f"one image (batch 1): teacher + OCBE + decoder, anomaly map, Gaussian, image score copied to the host; "
        f"median of {s.repeats} after {s.warmup} warm-up; {s.what}; {sync}", s.name, lat_fast)
    fast["throughput_ips"] = _figure(
        _median(thr_fast), "images/s",
        f"batch of {s.batch_size}: the same pipeline on a batch{micro}; images per second (batch size / median "
        f"time of {s.repeats}); {s.what}", s.name, thr_fast)
    unused = {id(p) for parent, name in unused_modules(s.model) for p in getattr(parent, name).parameters()}
    fast["param_memory_mb"] = _figure(
        _bytes_mb(p for p in s.model.parameters() if id(p) not in unused), "MB",
        "parameters held by the fast path: teacher stem + layer1-3, bottleneck (OCBE without its unused "
        "conv4/bn4, which the inference copy drops) and decoder; buffers (BN statistics) excluded", s.name)
    if s.ref_model is None:
        return
    ref["latency_ms"] = _figure(
        _median(lat_ref), "ms/image",
        f"the authors' per-image inference: full ResNet (layer4 computed), torch.no_grad, numpy float64 "
        f"map sum, scipy gaussian_filter, np.max; median of {s.repeats}, interleaved with the fast runs; {s.what}",
        s.name, lat_ref)
    ref["throughput_ips"] = _figure(
        1000.0 / _median(lat_ref), "images/s",
        "the authors' evaluation runs batch size 1: images per second = 1 / per-image latency", s.name)
    ref["param_memory_mb"] = _figure(
        _bytes_mb(s.ref_model.parameters()), "MB",
        "parameters held by the authors' model: the full torchvision ResNet (layer4 and fc included), "
        "bottleneck and decoder; buffers excluded", s.name)


def measure_agreement(s: Session) -> dict | None:
    """Fast maps vs reference maps of the same random image (float32, no amp)."""
    if s.ref_model is None:
        return None
    from rdbench.perf.reference import reference_predict

    x = torch.randn(1, 3, s.image_size, s.image_size, generator=torch.Generator().manual_seed(s.seed + 2)).to(s.dev)
    fm = fast_predict(s.fast_model, x, s.layers, s.sigma)
    rm = reference_predict(s.ref_model, x, s.layers, s.sigma)
    return {"max_abs_map_diff": float(np.abs(fm[0].double().cpu().numpy() - rm).max()),
            "description": "largest |fast - reference| over the smoothed map of one random image "
                           "(fast path in float32, without amp)"}


def measure_amp_effect(s: Session) -> dict | None:
    """The amp maps and scores vs the float32 ones of the same prepared model, and float32's throughput."""
    if s.amp is None:
        return None
    xn = torch.randn(s.batch_size, 3, s.image_size, s.image_size,
                     generator=torch.Generator().manual_seed(s.seed + 3)).to(s.dev)
    net32 = s.fast_model
    if getattr(s.fast_model, "rdbench_dtype", torch.float32) != torch.float32:
        # a bfloat16 copy (the CPU under bf16) has no float32 arithmetic: a float32 copy of the same weights
        net32 = prepare_for_inference(s.model, s.dev, **{k: v for k, v in s.options.items() if k != "dtype"})
    f32 = fast_predict(net32, xn, s.layers, s.sigma, None)  # also net32's warm-up (a fresh copy packs here)
    low = fast_predict(s.fast_model, xn, s.layers, s.sigma, s.amp)
    span = float(f32.amax() - f32.amin()) or 1.0
    s32, slow = f32.amax(dim=(1, 2)), low.amax(dim=(1, 2))
    t32 = [_timed(lambda: fast_predict(net32, xn, s.layers, s.sigma, None).cpu(), s.dev)
           for _ in range(s.repeats)]
    return {
        "amp": s.amp, "dtype": str(AMP_DTYPES[s.amp]),
        "max_abs_map_diff": float((low - f32).abs().max()),
        "max_abs_map_diff_relative_to_range": float((low - f32).abs().max()) / span,
        "max_rel_score_diff": float(((slow - s32).abs() / s32.abs().clamp_min(1e-12)).max()),
        "float32_throughput_ips": s.batch_size / _median(t32),
        "description": f"batch of {s.batch_size} random images: {s.amp} maps (a bfloat16 copy on the CPU, autocast "
                       f"elsewhere) vs float32 maps of the same weights (score = max of the map); "
                       f"float32_throughput_ips for comparison with "
                       f"throughput_ips (which uses {s.amp})"}


def memory_figures(s: Session, fast: dict, ref: dict, memory: bool) -> None:
    """Peak memory of batch-1 inference: CUDA max_memory_allocated, or on CPU the sampled peak RSS of
    fresh worker processes (rdbench.perf.memory)."""
    from rdbench.perf.reference import reference_predict

    modes = ("fast", "reference") if s.ref_model is not None else ("fast",)
    if not memory:
        for kind in modes:
            d = fast if kind == "fast" else ref
            d["peak_memory_mb"] = _figure(None, "MB", "peak memory of inference", s.name, note="memory=False")
            d["process_peak_memory_mb"] = _figure(None, "MB", "peak memory of the whole process", s.name,
                                                  note="memory=False")
        return
    if s.cuda:
        x1 = torch.randn(1, 3, s.image_size, s.image_size, generator=torch.Generator().manual_seed(s.seed + 1))
        x1 = x1.to(s.dev)
        runs = {"fast": lambda: fast_predict(s.fast_model, x1, s.layers, s.sigma, s.amp).cpu(),
                "reference": lambda: reference_predict(s.ref_model, x1, s.layers, s.sigma)}
        for kind in modes:
            runs[kind]()
            synchronize(s.dev)
            torch.cuda.reset_peak_memory_stats(s.dev)
            runs[kind]()
            synchronize(s.dev)
            d = fast if kind == "fast" else ref
            d["peak_memory_mb"] = _figure(
                torch.cuda.max_memory_allocated(s.dev) / 2**20, "MB",
                "torch.cuda.max_memory_allocated during one batch-1 inference after a warm-up (model weights "
                "resident on the device included; caching-allocator reserve excluded)", s.name)
            d["process_peak_memory_mb"] = _figure(None, "MB", "peak resident memory of the whole process", s.name,
                                                  note="measured on CPU only")
        return
    workers = measure_peak_memory(s.backbone, s.image_size, modes, (1,), s.weights, s.layers, s.sigma, s.options,
                                  s.amp)
    for kind in modes:
        r, d = workers[kind], (fast if kind == "fast" else ref)
        d["peak_memory_mb"] = _figure(
            r["peaks_mb"]["1"], "MB",
            f"peak resident memory ({r['method']}) of a fresh Python process during one batch-1 inference "
            f"after a warm-up, the maximum reset just before it: the model, "
            f"interpreter and libraries resident plus the inference's own allocations", s.name)
        d["process_peak_memory_mb"] = _figure(
            r["process_peak_mb"], "MB",
            "peak resident memory of that whole fresh process: import, building the model (the fast path "
            "builds the full ResNet once and drops layer4/fc), warm-up and inference", s.name)


def training_figures(s: Session, fast: dict, ref: dict, train: bool, train_epochs: int | None) -> dict | None:
    """Training images/s after the first epoch (rdbench.engine.train with its feature cache vs the authors' loop);
    returns the feature cache's facts."""
    if not train:
        for d in (fast, ref) if s.ref_model is not None else (fast,):
            d["train_throughput_ips"] = _figure(None, "images/s", "training throughput", s.name, note="train=False")
            d["train_first_epoch_ips"] = _figure(None, "images/s", "first training epoch", s.name,
                                                 note="train=False")
        return None
    from rdbench.engine.train import train as train_fast

    epochs = train_epochs or (1 + s.repeats)
    cfg = RunConfig(backbone=s.backbone, weights=s.weights, epochs=epochs, batch_size=s.batch_size,
                    image_size=s.image_size, layers=s.layers, seed=s.seed, device=str(s.dev), amp=s.amp or "none")
    data = RandomImages(2 * s.batch_size, s.image_size, s.seed)
    n = len(data)
    torch.manual_seed(s.seed)
    held = [build_rd_model(s.backbone, s.weights)]  # a list, so it can be freed before the reference trains
    info: dict = {}

    def run_fast(on_epoch):
        info.update(train_fast(held[0], data, cfg, s.dev, progress=False, on_epoch=on_epoch).feature_cache)

    times = _epoch_times(run_fast, s.dev)
    held.clear()
    rates = [n / t for t in times[1:]]
    autocast_note = f", student under {s.amp} autocast" if s.amp else ""
    fast["train_throughput_ips"] = _figure(
        _median(rates) if rates else None, "images/s",
        f"rdbench.engine.train.train, epochs after the first (teacher features served by the feature cache): "
        f"training images per second (student forward + backward + Adam step, batch {s.batch_size}"
        f"{autocast_note}); median over {len(rates)} epochs of {n} random images; {s.what}", s.name, rates)
    fast["train_first_epoch_ips"] = _figure(
        n / times[0], "images/s", "the first epoch (teacher computed and cached; includes warm-up)", s.name)
    if s.ref_model is not None:
        from rdbench.perf.reference import build_reference_model, reference_train

        torch.manual_seed(s.seed)
        rmodel = build_reference_model(s.backbone, s.weights)
        rtimes = _epoch_times(lambda on_epoch: reference_train(rmodel, data, cfg.replace(amp="none"), s.dev,
                                                               on_epoch), s.dev)
        rrates = [n / t for t in rtimes[1:]]
        ref["train_throughput_ips"] = _figure(
            _median(rrates) if rrates else None, "images/s",
            "the authors' loop, epochs after the first: full ResNet recomputed with autograd at every step "
            "(back-propagating into the teacher), images stacked per batch, float32; images per second", s.name,
            rrates)
        ref["train_first_epoch_ips"] = _figure(n / rtimes[0], "images/s", "the first epoch (includes warm-up)",
                                               s.name)
    return info

