"""``rdbench profile``: what one inference, a batch of inferences and a training step cost, on this device,
for rdbench's fast path and for the authors' procedure (``rdbench.reference``), measured back to back in
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
     "seconds": wall time of the whole profile}

    FIGURES = {"latency_ms", "throughput_ips", "peak_memory_mb", "process_peak_memory_mb",
               "param_memory_mb", "train_throughput_ips", "train_first_epoch_ips"}

Every figure is ``{"value": float | None, "unit", "description", "device", "samples"?, "note"?}``: a
figure is None when it was not measured (e.g. ``train=False``) and the note says why.

Fast path = ``prepare_for_inference`` (eval copy, batch norm folded into the convolutions, the decoder's
2x2 transposed convolutions as 1x1 convolutions + pixel shuffle, channels_last and oneDNN weights packed
once on CPU) + ``fast_predict`` (``torch.inference_mode``, teacher through layer3, batched, maps and Gaussian
on the device) and, for training, ``rdbench.train.train`` with its teacher-feature cache.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.utils.data import Dataset
from torchvision.models.resnet import BasicBlock, Bottleneck

from rdbench.config import RunConfig
from rdbench.device import device_name, resolve_device, synchronize
from rdbench.models.backbones import BACKBONES, Teacher
from rdbench.models.decoder import DeBasicBlock, DeBottleneck
from rdbench.models.ocbe import OCBE
from rdbench.models.rd import RDModel, build_rd_model
from rdbench.scoring import anomaly_maps, gaussian_blur
from rdbench.train import select_layers

__all__ = ["AMP_DTYPES", "CPU_MICRO_BATCH_BYTES", "PackedConv2d", "PixelShuffleDeconv", "autocast", "cpu_micro_batch",
           "fast_predict", "fold_batchnorm", "format_profile", "measure_peak_memory", "prepack_convolutions",
           "prepare_for_inference", "profile", "replace_deconvs"]

SCHEMA = "rdbench.profile/1"
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
FIGURE_KEYS = ("latency_ms", "throughput_ips", "peak_memory_mb", "process_peak_memory_mb", "param_memory_mb",
               "train_throughput_ips", "train_first_epoch_ips")


# ------------------------------------------------------------------------------------------ fast inference
_FOLDABLE = (BasicBlock, Bottleneck, DeBasicBlock, DeBottleneck, OCBE, Teacher)
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv4", "bn4"))
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)


def _fuse(conv: nn.Module, bn: nn.BatchNorm2d) -> nn.Module:
    # In place (torch's fuse_conv_bn_eval deep-copies the convolution): only one layer's weights exist twice
    # at any moment, so preparing a model in place does not raise the process's peak memory.
    if conv.training or bn.training:
        raise ValueError("batch norm folding needs eval mode")
    weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight,
                                        bn.bias, transpose=isinstance(conv, nn.ConvTranspose2d))
    conv.weight, conv.bias = weight, bias
    return conv


def fold_batchnorm(model: nn.Module) -> int:
    """Fold every eval-mode batch norm of rdbench's blocks into the convolution before it (in place; the
    batch norm becomes ``nn.Identity``). Only modules whose forward applies ``bnK`` directly to ``convK``
    (torchvision's and the decoder's blocks, the OCBE, the teacher's stem) and their 2-module
    downsample/upsample branches are touched. Returns how many were folded. For inference only: the
    folded model must not be trained."""
    model.eval()
    folded = 0
    for m in [m for m in model.modules() if isinstance(m, _FOLDABLE)]:  # no references to the layers kept
        for c, b in _PAIRS:
            conv, bn = getattr(m, c, None), getattr(m, b, None)
            if isinstance(conv, _CONVS) and isinstance(bn, nn.BatchNorm2d):
                setattr(m, c, _fuse(conv, bn))
                setattr(m, b, nn.Identity())
                folded += 1
        for name in ("downsample", "upsample"):
            seq = getattr(m, name, None)
            if isinstance(seq, nn.Sequential) and len(seq) == 2 and isinstance(seq[0], _CONVS) \
                    and isinstance(seq[1], nn.BatchNorm2d):
                seq[0], seq[1] = _fuse(seq[0], seq[1]), nn.Identity()
                folded += 1
    return folded


class PixelShuffleDeconv(nn.Module):
    """A 2x2, stride-2 transposed convolution (the decoder's upsampling) as a 1x1 convolution to 4x the
    channels followed by ``pixel_shuffle``: the same sums (the 2x2 windows of a stride-2 transposed
    convolution do not overlap), computed as one matrix product that oneDNN runs several times faster
    than its transposed convolution at batch 1."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        cin, cout, kh, kw = deconv.weight.shape
        weight = deconv.weight.detach().permute(1, 2, 3, 0).reshape(cout * kh * kw, cin, 1, 1)
        bias = None if deconv.bias is None else deconv.bias.detach().repeat_interleave(kh * kw)
        self.conv = nn.Conv2d(cin, cout * kh * kw, 1, bias=bias is not None).to(weight.device, weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(weight)
            if bias is not None:
                self.conv.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.conv(x), 2)


def _is_plain_2x2_deconv(m: nn.Module) -> bool:
    return (isinstance(m, nn.ConvTranspose2d) and tuple(m.kernel_size) == (2, 2) and tuple(m.stride) == (2, 2)
            and tuple(m.padding) == (0, 0) and tuple(m.output_padding) == (0, 0) and tuple(m.dilation) == (1, 1)
            and m.groups == 1)


def replace_deconvs(model: nn.Module) -> int:
    """Replace every plain 2x2 stride-2 ``ConvTranspose2d`` by a ``PixelShuffleDeconv`` (in place); returns
    how many. Run after ``fold_batchnorm`` (which folds into the transposed convolutions)."""
    replaced = 0
    # only the parents are listed: a replaced layer is freed at once, not when the loop ends
    for parent in [m for m in model.modules() if any(_is_plain_2x2_deconv(c) for c in m.children())]:
        for name, child in list(parent.named_children()):
            if _is_plain_2x2_deconv(child):
                setattr(parent, name, PixelShuffleDeconv(child))
                replaced += 1
    return replaced


def _prepack_supported() -> bool:
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight"))


class PackedConv2d(nn.Module):
    """A CPU ``nn.Conv2d`` whose weight oneDNN reorders once, at the first call, into its own blocked layout,
    instead of at every call as eager PyTorch does: the same kernel and the same bits (checked in the
    tests), 2-4x faster for the layers with large weights and small maps (batch 1, 8x8 and 16x16 maps of
    wide_resnet50_2). Float32 channels_last inputs only; the dense weight is dropped (the module holds
    no parameters) and the module stays on the CPU. Uses oneDNN operators that PyTorch registers for
    its compiler (``torch.ops.mkldnn._convolution_pointwise``); ``prepare_for_inference`` only builds it
    where they exist."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.weight_dense: torch.Tensor | None = conv.weight.detach().contiguous()
        self.bias_dense = None if conv.bias is None else conv.bias.detach().contiguous()
        self.packed: torch.Tensor | None = None

    def _pack(self, x: torch.Tensor) -> None:
        with torch.inference_mode(False), torch.no_grad():
            plain = self.weight_dense.to_mkldnn()
            self.weight_dense = None  # freed before the reorder: two copies of the layer at most, not three
            self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(plain, self.padding, self.stride, self.dilation,
                                                                    self.groups, list(x.shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.float32 or x.device.type != "cpu":
            raise ValueError("PackedConv2d runs float32 on the CPU; prepare the model with prepack=False for amp")
        if self.packed is None:
            self._pack(x)
        x = x.contiguous(memory_format=torch.channels_last)
        return torch.ops.mkldnn._convolution_pointwise(x, self.packed, self.bias_dense, self.padding, self.stride,
                                                       self.dilation, self.groups, "none", [], "")


def _packable(m: nn.Module) -> bool:
    return type(m) is nn.Conv2d and m.padding_mode == "zeros" and not isinstance(m.padding, str)


def prepack_convolutions(model: nn.Module) -> int:
    """Replace every plain ``nn.Conv2d`` (zero padding given as numbers) by a ``PackedConv2d`` (in place);
    returns how many."""
    replaced = 0
    for parent in [m for m in model.modules() if any(_packable(c) for c in m.children())]:
        for name, child in list(parent.named_children()):
            if _packable(child):
                setattr(parent, name, PackedConv2d(child))
                replaced += 1
    return replaced


def prepare_for_inference(model: RDModel, device: torch.device | str = "cpu", channels_last: bool | None = None,
                          fold_bn: bool = True, inplace: bool = False, pixel_shuffle: bool = True,
                          prepack: bool | None = None) -> RDModel:
    """An inference-only version of ``model`` on ``device`` (a copy unless ``inplace``: the training model is
    left as it is); its maps equal the unprepared model's within float rounding (~1e-6):

    * eval mode; ``fold_bn``: batch norms folded into the convolutions before them;
    * ``pixel_shuffle``: the decoder's 2x2 stride-2 transposed convolutions as 1x1 convolution + pixel shuffle;
    * ``channels_last`` (default: on CPU; on CUDA off unless asked, not measured here): NHWC weights;
    * ``prepack`` (default: on CPU with channels_last when oneDNN is there): ``PackedConv2d`` everywhere.

    Measured (2-core AVX2 CPU, torch 2.14, wide_resnet50_2 256 px, per image, ratio to the authors'
    procedure 0.57 s): batch 1: ``rdbench.evaluate.predict_maps`` 0.79 (no layer4, torch maps), +channels_last
    0.79, +fold 0.80, +pixel shuffle 0.82, +prepack 0.58 (prepack alone 0.63); batch 8: predict_maps 0.82,
    +channels_last 0.65, +fold 0.58, +pixel shuffle/prepack 0.59. resnet18 batch 1: 0.86, 0.78, 0.69,
    0.69, 0.57. The prepared model is for inference only (``rdbench_inference_only``) and, prepacked,
    for the CPU only."""
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    if not inplace:
        model = copy.deepcopy(model)
    model.to(device).eval()
    if fold_bn:
        fold_batchnorm(model)
    if pixel_shuffle:
        replace_deconvs(model)
    if prepack is None:
        prepack = device.type == "cpu" and bool(channels_last) and _prepack_supported()
    if prepack:
        if device.type != "cpu" or not channels_last or not _prepack_supported():
            raise ValueError("prepack needs the CPU, channels_last and oneDNN (torch.backends.mkldnn)")
        prepack_convolutions(model)  # before channels_last: the packed layers take the NCHW weights without a copy
    if channels_last:
        model.to(memory_format=torch.channels_last)
    model.rdbench_channels_last = bool(channels_last)
    model.rdbench_prepacked = bool(prepack)
    model.rdbench_inference_only = bool(fold_bn or prepack or pixel_shuffle)
    return model


def autocast(device: torch.device, amp: str | None):
    """``torch.autocast`` for ``amp`` in AMP_DTYPES ("bf16", "fp16"), or a no-op context for None."""
    if amp is None or amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown amp {amp!r}; valid: none, {', '.join(AMP_DTYPES)}")
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("fp16 autocast is for CUDA; use bf16 on CPU")
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])


CPU_MICRO_BATCH_BYTES = 4 * 2**20


def cpu_micro_batch(model: RDModel, image_size: tuple[int, int]) -> int:
    """Images per forward pass on the CPU: as many as keep the teacher's layer1 map of the micro-batch within
    CPU_MICRO_BATCH_BYTES (4 MiB), so that a layer's output is still in cache when the next layer reads
    it. Measured with prepared models at 256 px: wide_resnet50_2 (4 MiB per image) is fastest one image at
    a time (0.32 s/image vs 0.35 at batch 8), resnet18 (1 MiB) at 2-4 images (0.052 vs 0.059 at batch 1)."""
    spec = BACKBONES.get(model.backbone)
    per_image = 64 * spec.expansion * (image_size[0] // 4) * (image_size[1] // 4) * 4
    return max(1, CPU_MICRO_BATCH_BYTES // per_image)


@torch.inference_mode()
def fast_predict(model: RDModel, images: torch.Tensor, layers: tuple[int, ...] = (1, 2, 3), sigma: float = 4.0,
                 amp: str | None = None, micro_batch: int | None = None) -> torch.Tensor:
    """Smoothed anomaly maps (N x S x S float32, on the images' device) of a batch, like
    ``rdbench.evaluate.predict_maps``, plus channels_last input for a prepared model, an optional
    autocast of the networks (the maps themselves are always computed in float32), and on the CPU the
    batch run in micro-batches (``micro_batch``; default ``cpu_micro_batch``; the whole batch on CUDA)."""
    if amp is not None and amp != "none" and getattr(model, "rdbench_prepacked", False):
        raise ValueError("amp needs a model prepared with prepack=False (prepacked convolutions run float32)")
    if micro_batch is None:
        micro_batch = (cpu_micro_batch(model, tuple(images.shape[-2:])) if images.device.type == "cpu"
                       else images.shape[0])
    if images.shape[0] > micro_batch:
        return torch.cat([fast_predict(model, images[i:i + micro_batch], layers, sigma, amp, micro_batch)
                          for i in range(0, images.shape[0], micro_batch)])
    if getattr(model, "rdbench_channels_last", False):
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(images.device, amp):
        t = model.teacher(images)
        s = model.student(t)
    t, s = select_layers(t, layers), select_layers(s, layers)
    if amp is not None and amp != "none":
        t, s = [x.float() for x in t], [x.float() for x in s]
    raw = anomaly_maps(t, s, images.shape[-2:], layers=tuple(range(1, len(layers) + 1)))
    return gaussian_blur(raw, sigma)


# ------------------------------------------------------------------------------------------------- memory
def _vm_hwm_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0, /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _maxrss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 2**20 if sys.platform == "darwin" else r / 1024  # bytes on macOS, KiB on Linux


def _memory_worker(spec: dict) -> dict:
    """Runs in a fresh interpreter: build the model (fast or reference), run one warm-up inference, then
    one measured inference per batch size with the high-water mark reset before each."""
    from rdbench.reference import build_reference_model, reference_predict

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    layers, sigma, size = tuple(spec["layers"]), spec["sigma"], spec["image_size"]
    if spec["mode"] == "fast":
        model = prepare_for_inference(build_rd_model(spec["backbone"], spec["weights"]), "cpu", inplace=True,
                                      **spec["options"])

        def run(x: torch.Tensor) -> None:
            fast_predict(model, x, layers, sigma, spec["amp"]).cpu()
    else:
        ref = build_reference_model(spec["backbone"], spec["weights"])

        def run(x: torch.Tensor) -> None:
            for i in range(x.shape[0]):
                reference_predict(ref, x[i:i + 1], layers, sigma)

    out: dict = {"peaks_mb": {}, "method": "VmHWM"}
    for batch in spec["batches"]:
        x = torch.randn(batch, 3, size, size)
        run(x)  # warm-up: oneDNN primitives, allocator pools
        out.setdefault("process_peak_mb", 0.0)
        hwm = _vm_hwm_mb()
        out["process_peak_mb"] = max(out["process_peak_mb"], hwm if hwm is not None else _maxrss_mb())
        if _reset_hwm() and hwm is not None:
            run(x)
            out["peaks_mb"][str(batch)] = _vm_hwm_mb()
        else:
            out["method"] = "ru_maxrss (no high-water reset on this OS: includes building the model)"
            run(x)
            out["peaks_mb"][str(batch)] = _maxrss_mb()
        out["process_peak_mb"] = max(out["process_peak_mb"], out["peaks_mb"][str(batch)])
        del x
    out["rss_end_mb"] = _rss_mb()
    return out


def measure_peak_memory(backbone: str, image_size: int, modes: tuple[str, ...] = ("fast", "reference"),
                        batches: tuple[int, ...] = (1,), weights: str = "none", layers: tuple[int, ...] = (1, 2, 3),
                        sigma: float = 4.0, options: dict | None = None, amp: str | None = None,
                        timeout_s: float = 600) -> dict[str, dict]:
    """Peak resident memory (MB) of CPU inference for each of ``modes`` ("fast", "reference"), each measured
    in its own fresh Python process (run side by side) so that nothing allocated earlier here counts.
    Both workers import the same libraries (torch, scipy, sklearn, skimage, pandas), so the difference is
    the model and the inference. The figure is the process's own high-water mark (VmHWM), not
    ``ru_maxrss``: on Linux a child's ru_maxrss starts at its parent's peak (the fork before exec), which
    would report the profiler's memory instead of the worker's. ``options``: keyword arguments of
    ``prepare_for_inference`` for the fast worker (default: its defaults; prepack off with amp).
    Returns {mode: {"peaks_mb": {batch: MB}, "process_peak_mb", "method", "rss_end_mb"}}."""
    code = ("import json, sys; from rdbench.profile import _memory_worker; "
            "print('RDBENCH-JSON ' + json.dumps(_memory_worker(json.loads(sys.argv[1]))))")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs = {}
    for mode in modes:
        if mode not in ("fast", "reference"):
            raise ValueError(f"unknown mode {mode!r}; valid: fast, reference")
        spec = {"mode": mode, "backbone": backbone, "image_size": image_size, "batches": list(batches),
                "weights": weights, "layers": list(layers), "sigma": sigma, "amp": amp,
                "options": dict(options or ({"prepack": False} if amp else {})), "threads": torch.get_num_threads()}
        procs[mode] = subprocess.Popen([sys.executable, "-c", code, json.dumps(spec)], stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True, env=env)
    results = {}
    for mode, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        for line in out.splitlines()[::-1]:
            if line.startswith("RDBENCH-JSON "):
                results[mode] = json.loads(line[len("RDBENCH-JSON "):])
                break
        else:
            raise RuntimeError(f"{mode} memory worker failed (exit {proc.returncode}): {err.strip()[-2000:]}")
    return results


# ------------------------------------------------------------------------------------------------ helpers
class _RandomImages(Dataset):
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


# ------------------------------------------------------------------------------------------------ profile
def profile(backbone: str, image_size: int = 256, batch_size: int = 8, device: str = "cpu", weights: str = "none",
            repeats: int | None = None, reference: bool = True, train: bool = True, memory: bool = True,
            channels_last: bool | None = None, fold_bn: bool = True, pixel_shuffle: bool = True,
            prepack: bool | None = None, amp: str | None = None,
            layers: tuple[int, ...] = (1, 2, 3), sigma: float = 4.0, train_epochs: int | None = None,
            seed: int = 0) -> dict:
    """Profile inference and training of ``backbone`` at ``image_size`` on ``device`` (see the module
    docstring for the result). ``repeats``: timed runs per figure after warm-up (default 3 on CPU, 20 on
    CUDA); the median is reported. ``reference``: also measure the authors' procedure and the ratios.
    ``train``: training throughput (an epoch of 2 batches of ``batch_size`` random images; 1 + repeats
    epochs, or ``train_epochs``; the first fills the feature cache and is reported on its own).
    ``memory``: peak memory (CPU: two fresh worker processes; CUDA: max_memory_allocated).
    ``amp``: "bf16"/"fp16" autocast for the fast path; its effect on the maps is reported."""
    t_start = time.perf_counter()
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    name = device_name(dev)
    if repeats is None:
        repeats = 20 if cuda else 3
    warmup = 3 if cuda else 1
    if channels_last is None:
        channels_last = not cuda
    if amp == "none":
        amp = None
    notes_cuda = "torch.cuda.synchronize before and after every timed call" if cuda else "wall clock"

    torch.manual_seed(seed)
    model = build_rd_model(backbone, weights)
    options = {"channels_last": channels_last, "fold_bn": fold_bn, "pixel_shuffle": pixel_shuffle,
               "prepack": False if amp else prepack}
    fast_model = prepare_for_inference(model, dev, **options)
    options["prepack"] = fast_model.rdbench_prepacked
    ref_model = None
    if reference:
        from rdbench.reference import reference_model_from, reference_predict

        ref_model = reference_model_from(model.to(dev))
        ref_model.to(dev).eval()
    g = torch.Generator().manual_seed(seed + 1)
    x1 = torch.randn(1, 3, image_size, image_size, generator=g).to(dev)
    xn = torch.randn(batch_size, 3, image_size, image_size, generator=g).to(dev)

    def fast_one() -> None:
        fast_predict(fast_model, x1, layers, sigma, amp).amax(dim=(1, 2)).cpu()

    def ref_one() -> None:
        reference_predict(ref_model, x1, layers, sigma).max()

    def fast_batch() -> None:
        fast_predict(fast_model, xn, layers, sigma, amp).amax(dim=(1, 2)).cpu()

    # --- latency (batch 1), fast and reference interleaved
    for _ in range(warmup):
        fast_one()
        if ref_model is not None:
            ref_one()
    lat_fast, lat_ref = [], []
    for _ in range(repeats):
        lat_fast.append(_timed(fast_one, dev) * 1000)
        if ref_model is not None:
            lat_ref.append(_timed(ref_one, dev) * 1000)
    # --- throughput (batch N)
    for _ in range(warmup):
        fast_batch()
    thr_fast = [batch_size / _timed(fast_batch, dev) for _ in range(repeats)]

    fast: dict = {}
    ref: dict = {}
    micro = ""
    if not cuda:
        mb = cpu_micro_batch(fast_model, (image_size, image_size))
        micro = f" (on the CPU in micro-batches of {mb}, see cpu_micro_batch)" if mb < batch_size else ""
    what = f"{backbone} {image_size}x{image_size}, weights={weights}"
    fast["latency_ms"] = _figure(
        _median(lat_fast), "ms/image",
        f"one image (batch 1): teacher + OCBE + decoder, anomaly map, Gaussian, image score copied to the host; "
        f"median of {repeats} after {warmup} warm-up; {what}; {notes_cuda}", name, lat_fast)
    fast["throughput_ips"] = _figure(
        _median(thr_fast), "images/s",
        f"batch of {batch_size}: the same pipeline on a batch{micro}; images per second (batch size / median "
        f"time of {repeats}); {what}", name, thr_fast)
    if ref_model is not None:
        ref["latency_ms"] = _figure(
            _median(lat_ref), "ms/image",
            f"the authors' per-image inference: full ResNet (layer4 computed), torch.no_grad, numpy float64 "
            f"map sum, scipy gaussian_filter, np.max; median of {repeats}, interleaved with the fast runs; {what}",
            name, lat_ref)
        ref["throughput_ips"] = _figure(
            1000.0 / _median(lat_ref), "images/s",
            "the authors' evaluation runs batch size 1: images per second = 1 / per-image latency", name)

    # --- parameter memory
    fast["param_memory_mb"] = _figure(
        _bytes_mb(model.parameters()), "MB",
        "parameters held by the fast path: teacher stem + layer1-3, bottleneck (OCBE, incl. its unused "
        "conv4/bn4 as in the authors' code) and decoder; buffers (BN statistics) excluded", name)
    if ref_model is not None:
        ref["param_memory_mb"] = _figure(
            _bytes_mb(ref_model.parameters()), "MB",
            "parameters held by the authors' model: the full torchvision ResNet (layer4 and fc included), "
            "bottleneck and decoder; buffers excluded", name)

    # --- agreement and amp effect
    agreement = None
    if ref_model is not None:
        fm = fast_predict(fast_model, x1, layers, sigma)
        rm = reference_predict(ref_model, x1, layers, sigma)
        agreement = {"max_abs_map_diff": float(np.abs(fm[0].double().cpu().numpy() - rm).max()),
                     "description": "largest |fast - reference| over the smoothed map of one random image "
                                    "(fast path in float32, without amp)"}
    amp_effect = None
    if amp is not None:
        f32 = fast_predict(fast_model, xn, layers, sigma, None)
        low = fast_predict(fast_model, xn, layers, sigma, amp)
        span = float(f32.amax() - f32.amin()) or 1.0
        s32, slow = f32.amax(dim=(1, 2)), low.amax(dim=(1, 2))
        t32 = [_timed(lambda: fast_predict(fast_model, xn, layers, sigma, None).cpu(), dev) for _ in range(repeats)]
        amp_effect = {
            "amp": amp, "dtype": str(AMP_DTYPES[amp]),
            "max_abs_map_diff": float((low - f32).abs().max()),
            "max_abs_map_diff_relative_to_range": float((low - f32).abs().max()) / span,
            "max_rel_score_diff": float(((slow - s32).abs() / s32.abs().clamp_min(1e-12)).max()),
            "float32_throughput_ips": batch_size / _median(t32),
            "description": f"batch of {batch_size} random images: {amp} autocast maps vs float32 maps of the same "
                           f"prepared model (score = max of the map); float32_throughput_ips for comparison with "
                           f"throughput_ips (which uses {amp})"}

    # --- peak memory
    fast_settings = {**options, "amp": amp, "inference_mode": True, "feature_cache": None}
    modes = ("fast", "reference") if ref_model is not None else ("fast",)
    workers = (measure_peak_memory(backbone, image_size, modes, (1,), weights, layers, sigma, options, amp)
               if memory and not cuda else {})
    for kind in modes:
        d = fast if kind == "fast" else ref
        if not memory:
            d["peak_memory_mb"] = _figure(None, "MB", "peak memory of inference", name, note="memory=False")
            d["process_peak_memory_mb"] = _figure(None, "MB", "peak memory of the whole process", name,
                                                  note="memory=False")
            continue
        if cuda:
            m, fn = (fast_model, fast_one) if kind == "fast" else (ref_model, ref_one)
            m.to(dev)
            fn()
            synchronize(dev)
            torch.cuda.reset_peak_memory_stats(dev)
            fn()
            synchronize(dev)
            peak = torch.cuda.max_memory_allocated(dev) / 2**20
            d["peak_memory_mb"] = _figure(
                peak, "MB", "torch.cuda.max_memory_allocated during one batch-1 inference after a warm-up "
                "(model weights resident on the device included; caching-allocator reserve excluded)", name)
            d["process_peak_memory_mb"] = _figure(None, "MB", "peak resident memory of the whole process", name,
                                                  note="measured on CPU only")
        else:
            r = workers[kind]
            d["peak_memory_mb"] = _figure(
                r["peaks_mb"]["1"], "MB",
                f"peak resident memory (RSS high-water mark, {r['method']}) of a fresh Python process during one "
                f"batch-1 inference after a warm-up, the high-water mark reset just before it: the model, "
                f"interpreter and libraries resident plus the inference's own allocations", name)
            d["process_peak_memory_mb"] = _figure(
                r["process_peak_mb"], "MB",
                "peak resident memory of that whole fresh process: import, building the model (the fast path "
                "builds the full ResNet once and drops layer4/fc), warm-up and inference", name)

    # --- training
    if train:
        from rdbench.train import train as train_fast

        epochs = train_epochs or (1 + repeats)
        cfg = RunConfig(backbone=backbone, weights=weights, epochs=epochs, batch_size=batch_size,
                        image_size=image_size, layers=layers, seed=seed, device=str(dev))
        data = _RandomImages(2 * batch_size, image_size, seed)
        torch.manual_seed(seed)
        tmodel = build_rd_model(backbone, weights)
        info: dict = {}

        def run_fast(on_epoch):
            info.update(train_fast(tmodel, data, cfg, dev, progress=False, on_epoch=on_epoch).feature_cache)

        times = _epoch_times(run_fast, dev)
        fast_settings["feature_cache"] = info
        n = len(data)
        fast["train_throughput_ips"] = _figure(
            _median([n / t for t in times[1:]]) if len(times) > 1 else None, "images/s",
            f"rdbench.train.train, epochs after the first (teacher features served by the feature cache): "
            f"training images per second (student forward + backward + Adam step, batch {batch_size}); "
            f"median over {len(times) - 1} epochs of {n} random images; {what}", name, [n / t for t in times[1:]])
        fast["train_first_epoch_ips"] = _figure(
            n / times[0], "images/s", "the first epoch (teacher computed and cached; includes warm-up)", name)
        del tmodel
        if ref_model is not None:
            from rdbench.reference import build_reference_model, reference_train

            torch.manual_seed(seed)
            rmodel = build_reference_model(backbone, weights)
            rtimes = _epoch_times(lambda on_epoch: reference_train(rmodel, data, cfg, dev, on_epoch), dev)
            ref["train_throughput_ips"] = _figure(
                _median([n / t for t in rtimes[1:]]) if len(rtimes) > 1 else None, "images/s",
                "the authors' loop, epochs after the first: full ResNet recomputed with autograd at every step "
                "(back-propagating into the teacher), images stacked per batch; images per second", name,
                [n / t for t in rtimes[1:]])
            ref["train_first_epoch_ips"] = _figure(n / rtimes[0], "images/s", "the first epoch (includes warm-up)",
                                                   name)
            del rmodel
    else:
        for d in (fast, ref) if ref_model is not None else (fast,):
            d["train_throughput_ips"] = _figure(None, "images/s", "training throughput", name, note="train=False")
            d["train_first_epoch_ips"] = _figure(None, "images/s", "first training epoch", name, note="train=False")

    ratios: dict = {}
    if ref_model is not None:
        spec = {"latency_ms": ("lower", "per-image latency, fast / reference"),
                "throughput_ips": ("higher", f"images/s, fast at batch {batch_size} / reference (batch 1)"),
                "peak_memory_mb": ("lower", "peak memory of batch-1 inference, fast / reference"),
                "process_peak_memory_mb": ("lower", "peak memory of the whole inference process, fast / reference"),
                "param_memory_mb": ("lower", "parameter memory, fast / reference"),
                "train_throughput_ips": ("higher", "training images/s after the first epoch, fast / reference")}
        for key, (better, desc) in spec.items():
            a, b = fast[key]["value"], ref[key]["value"]
            ratios[key] = {"value": a / b if a is not None and b else None, "better": better,
                           "description": desc}
    return {"schema": SCHEMA, "backbone": backbone, "image_size": image_size, "batch_size": batch_size,
            "weights": weights, "repeats": repeats,
            "device": {"type": dev.type, "name": name, "torch": torch.__version__, "threads": torch.get_num_threads(),
                       "platform": platform.platform()},
            "fast_settings": fast_settings, "fast": fast, "reference": ref if ref_model is not None else None,
            "ratios": ratios, "agreement": agreement, "amp_effect": amp_effect,
            "seconds": time.perf_counter() - t_start}


def format_profile(result: dict) -> str:
    """A human-readable table of ``profile``'s result (the CLI's output without --json)."""
    d = result["device"]
    lines = [f"rdbench profile: {result['backbone']} {result['image_size']}px, batch {result['batch_size']}, "
             f"weights {result['weights']}, {d['type']} ({d['name']}, {d['threads']} threads, torch {d['torch']})",
             f"fast path: {', '.join(f'{k}={v}' for k, v in result['fast_settings'].items() if k != 'feature_cache')}",
             ""]
    ref = result.get("reference")
    header = f"{'figure':<24}{'fast':>14}{'reference':>14}{'ratio':>9}  unit"
    lines += [header, "-" * len(header)]
    for key in FIGURE_KEYS:
        f = result["fast"].get(key)
        if f is None:
            continue
        r = ref.get(key) if ref else None
        ratio = result["ratios"].get(key, {}).get("value") if ref else None

        def fmt(v):
            return "-" if v is None else f"{v:,.1f}" if abs(v) >= 10 else f"{v:.3g}"

        lines.append(f"{key:<24}{fmt(f['value']):>14}{fmt(r['value'] if r else None):>14}"
                     f"{('-' if ratio is None else f'{ratio:.2f}x'):>9}  {f['unit']}")
    lines.append("")
    for key in FIGURE_KEYS:
        f = result["fast"].get(key)
        if f is not None:
            lines.append(f"{key}: {f['description']}" + (f" [{f['note']}]" if f.get("note") else ""))
    if result.get("agreement"):
        lines.append(f"agreement: max |fast - reference| map difference {result['agreement']['max_abs_map_diff']:.2e}")
    if result.get("amp_effect"):
        a = result["amp_effect"]
        lines.append(f"amp {a['amp']}: max map diff {a['max_abs_map_diff']:.2e} "
                     f"({a['max_abs_map_diff_relative_to_range']:.2e} of the map range), max score rel. diff "
                     f"{a['max_rel_score_diff']:.2e}; float32 throughput {a['float32_throughput_ips']:.3g} images/s")
    cache = result["fast_settings"].get("feature_cache")
    if cache:
        lines.append(f"feature cache: active={cache['active']}, {cache['bytes'] / 2**20:.0f} MiB"
                     + (f" ({cache['reason']})" if cache.get("reason") else ""))
    lines.append(f"profile took {result['seconds']:.0f} s")
    return "\n".join(lines)
