"""``rdbench profile``: what one inference, a batch of inferences and a training step cost, on this device,
for rdbench's fast path and for the authors' procedure (``rdbench.perf.reference``), measured back to back in
one process so that other load on the machine mostly cancels out of the ratios.

``profile(...)`` returns a dict (JSON-serialisable)::

    {"schema": "rdbench.profile/1", "backbone", "image_size", "batch_size", "weights", "repeats",
     "device": {"type", "name", "torch", "threads"},
     "fast_settings": {"channels_last", "fold_bn", "pixel_shuffle", "prepack", "amp", "inference_mode",
                       "feature_cache"},
     "fast": FIGURES, "reference": FIGURES or None,
     "ratios": {name: {"value", "better", "description"}},   # fast / reference; empty without reference
     "agreement": {"max_abs_map_diff", "description"},        # fast maps vs reference maps, same input
     "amp_effect": {...} or None,                             # with amp: bf16 maps vs float32 maps
     "roofline": {...} or None,                               # FLOPs, GFLOP/s, fraction of a calibration
     "seconds": wall time of the whole profile}

    FIGURES = {"latency_ms", "throughput_ips", "peak_memory_mb", "process_peak_memory_mb",
               "param_memory_mb", "train_throughput_ips", "train_first_epoch_ips"}

Every figure is ``{"value": float | None, "unit", "description", "device", "samples"?, "note"?}``: a
figure is None when it was not measured (e.g. ``train=False``) and the note says why.

Fast path = ``prepare_for_inference`` (eval copy, batch norm folded into the convolutions, the decoder's
2x2 transposed convolutions as 1x1 convolutions + pixel shuffle, channels_last and oneDNN weights packed
once on CPU) + ``fast_predict`` (``torch.inference_mode``, teacher through layer3, batched, maps and Gaussian
on the device) and, for training, ``rdbench.engine.train.train`` with its teacher-feature cache.

The figures are measured in ``rdbench.perf.profile_figures``; saving and formatting are in
``rdbench.perf.profile_output``.
"""

from __future__ import annotations

import platform
import time

import torch

from rdbench.engine.device import check_amp, device_name, resolve_device, warn_if_emulated
from rdbench.engine.inference import inference_options, prepare_for_inference
from rdbench.models.rd import build_rd_model
from rdbench.perf.profile_figures import (
    FIGURE_KEYS,
    Session,
    inference_figures,
    measure_agreement,
    measure_amp_effect,
    memory_figures,
    training_figures,
)
from rdbench.perf.profile_output import format_profile, save_profile

__all__ = ["FIGURE_KEYS", "format_profile", "profile", "save_profile"]

SCHEMA = "rdbench.profile/1"

_RATIOS = {"latency_ms": ("lower", "per-image latency, fast / reference"),
           "throughput_ips": ("higher", "images/s, fast at batch {batch} / reference (batch 1)"),
           "peak_memory_mb": ("lower", "peak memory of batch-1 inference, fast / reference"),
           "process_peak_memory_mb": ("lower", "peak memory of the whole inference process, fast / reference"),
           "param_memory_mb": ("lower", "parameter memory, fast / reference"),
           "train_throughput_ips": ("higher", "training images/s after the first epoch, fast / reference")}


def profile(backbone: str, image_size: int = 256, batch_size: int = 8, device: str = "cpu", weights: str = "none",
            repeats: int | None = None, reference: bool = True, train: bool = True, memory: bool = True,
            channels_last: bool | None = None, fold_bn: bool = True, pixel_shuffle: bool = True,
            prepack: bool | None = None, amp: str | None = None, compile: bool = False,
            layers: tuple[int, ...] = (1, 2, 3), sigma: float = 4.0, train_epochs: int | None = None,
            seed: int = 0, roofline: bool = True) -> dict:
    """Profile inference and training of ``backbone`` at ``image_size`` on ``device`` (see the module
    docstring for the result). ``repeats``: timed runs per figure after warm-up (default 3 on CPU, 20 on
    CUDA); the median is reported. ``reference``: also measure the authors' procedure and the ratios.
    ``train``: training throughput (an epoch of 2 batches of ``batch_size`` random images; 1 + repeats
    epochs, or ``train_epochs``; the first fills the feature cache and is reported on its own).
    ``memory``: peak memory (CPU: two fresh worker processes; CUDA: max_memory_allocated).
    ``amp``: "bf16"/"fp16" autocast for the fast path; its effect on the maps is reported. ``compile``:
    torch.compile the prepared networks (compilation happens in the warm-up, outside the timed runs).
    ``roofline``: the FLOPs of the pipeline and the fraction of this machine's peak achieved
    (``rdbench.perf.roofline``; the calibration adds a few seconds)."""
    t_start = time.perf_counter()
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    amp = None if check_amp(amp, dev) == "none" else amp
    warn_if_emulated(amp, dev)
    if repeats is None:
        repeats = 20 if cuda else 3
    if channels_last is None:
        channels_last = not cuda
    torch.manual_seed(seed)
    model = build_rd_model(backbone, weights)
    # under amp: a bfloat16 copy on the CPU, autocast without packed convolutions elsewhere (inference_options)
    options = {"channels_last": channels_last, "fold_bn": fold_bn, "pixel_shuffle": pixel_shuffle,
               "prepack": prepack, "compile": compile, **inference_options(amp, dev)}
    fast_model = prepare_for_inference(model, dev, **options)
    options["prepack"] = fast_model.rdbench_prepacked
    ref_model = None
    if reference:
        from rdbench.perf.reference import reference_model_from

        ref_model = reference_model_from(model.to(dev)).to(dev).eval()
    s = Session(dev, device_name(dev), backbone, image_size, batch_size, weights, repeats, 3 if cuda else 1,
                 tuple(layers), sigma, amp, seed, options, model, fast_model, ref_model)

    fast: dict = {}
    ref: dict = {}
    inference_figures(s, fast, ref)
    agreement, amp_effect = measure_agreement(s), measure_amp_effect(s)
    memory_figures(s, fast, ref, memory)
    cache = training_figures(s, fast, ref, train, train_epochs)
    roof = _roofline(s, fast) if roofline else None
    ratios: dict = {}
    if ref_model is not None:
        for key, (better, desc) in _RATIOS.items():
            a, b = fast[key]["value"], ref[key]["value"]
            ratios[key] = {"value": a / b if a is not None and b else None, "better": better,
                           "description": desc.format(batch=batch_size)}
    return {"schema": SCHEMA, "backbone": backbone, "image_size": image_size, "batch_size": batch_size,
            "weights": weights, "repeats": repeats,
            "device": {"type": dev.type, "name": s.name, "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "platform": platform.platform()},
            "fast_settings": {**options, "amp": amp, "inference_mode": True, "feature_cache": cache},
            "fast": fast, "reference": ref if ref_model is not None else None,
            "ratios": ratios, "agreement": agreement, "amp_effect": amp_effect, "roofline": roof,
            "seconds": time.perf_counter() - t_start}


def _roofline(s: Session, fast: dict) -> dict:
    from rdbench.perf.roofline import calibrate, pipeline_flops
    from rdbench.perf.roofline import roofline as make_roofline

    latency = fast["latency_ms"]["value"]
    rates = {"inference_batch1": 1000.0 / latency if latency else None,
             "inference_batch": fast["throughput_ips"]["value"], "train": fast["train_throughput_ips"]["value"]}
    return make_roofline(pipeline_flops(s.model, s.image_size, s.layers), rates, calibrate(s.dev),
                         "bfloat16" if s.amp == "bf16" else "float32")
