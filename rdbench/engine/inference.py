"""The fast inference path: an inference-only copy of an RD model (``prepare_for_inference``) and batched
maps from it (``fast_predict``). ``rdbench.engine.evaluate`` scores every run with it; ``rdbench profile`` and
``tests/benchmarks`` measure it against the authors' procedure (``rdbench.perf.reference``).

Every rewrite keeps the maps equal to the plain model's within float rounding (tests/test_inference.py):
batch norm folded into the convolutions, the decoder's 2x2 stride-2 transposed convolutions as 1x1
convolution + pixel shuffle, channels_last and oneDNN weights packed once on the CPU.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import skip_init
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torchvision.models.resnet import BasicBlock, Bottleneck

from rdbench.engine.device import autocast, bf16_native, model_dtype
from rdbench.engine.heap import release_free_memory
from rdbench.engine.scoring import gaussian_blur, layer_maps, sum_layers
from rdbench.models.backbones import BACKBONES, Teacher
from rdbench.models.decoder import DeBasicBlock, DeBottleneck
from rdbench.models.ocbe import OCBE
from rdbench.models.rd import RDModel, select_layers

__all__ = ["CPU_MICRO_BATCH_BYTES", "CPU_MICRO_BATCH_BYTES_LOW", "PackedConv2d", "PixelShuffleDeconv",
           "cpu_micro_batch", "fast_predict", "fold_batchnorm", "inference_options", "prepack_convolutions",
           "prepare_for_inference", "release_free_memory", "replace_deconvs", "unused_modules"]

_FOLDABLE = (BasicBlock, Bottleneck, DeBasicBlock, DeBottleneck, OCBE, Teacher)
_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"), ("conv4", "bn4"))
_CONVS = (nn.Conv2d, nn.ConvTranspose2d)
# Submodules that the model builds (the authors' RNG chain, their parameter count) but scoring never runs.
_UNUSED = {OCBE: ("conv4", "bn4")}


def unused_modules(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, name) of every submodule scoring never runs (the OCBE's conv4/bn4: 32 MB for wide_resnet50_2)."""
    return [(m, name) for m in model.modules() for kind, names in _UNUSED.items() if isinstance(m, kind)
            for name in names if getattr(m, name, None) is not None]


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
        # skip_init: no random initialisation, so preparing a model leaves torch's global generator alone
        self.conv = skip_init(nn.Conv2d, cin, cout * kh * kw, 1, bias=bias is not None, device=weight.device,
                              dtype=weight.dtype)
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


def _prepack_supported(dtype: torch.dtype = torch.float32) -> bool:
    # oneDNN packs bf16 weights only where bf16 is native (AVX512 or AMX); on an AVX2 CPU the reorder raises
    return (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
            and hasattr(torch._C._nn, "mkldnn_reorder_conv2d_weight")
            and (dtype == torch.float32 or (dtype == torch.bfloat16 and bf16_native("cpu"))))


class PackedConv2d(nn.Module):
    """A CPU ``nn.Conv2d`` whose weight oneDNN reorders once, at the first call, into its own blocked layout,
    instead of at every call as eager PyTorch does: the same kernel and the same bits (checked in the
    tests), 2-4x faster for the layers with large weights and small maps (batch 1, 8x8 and 16x16 maps of
    wide_resnet50_2). Channels_last inputs of the weight's dtype only (float32, or bfloat16); the dense weight
    is dropped (the module holds no parameters) and the module stays on the CPU. Uses oneDNN operators that
    PyTorch registers for its compiler (``torch.ops.mkldnn._convolution_pointwise``); ``prepare_for_inference``
    only builds it where they exist."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.padding, self.stride = list(conv.padding), list(conv.stride)
        self.dilation, self.groups = list(conv.dilation), conv.groups
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.dtype = conv.weight.dtype  # float32, or bfloat16 in a reduced-precision copy
        self.weight_dense: torch.Tensor | None = conv.weight.detach().contiguous()
        self.bias_dense = None if conv.bias is None else conv.bias.detach().contiguous()
        self.packed: torch.Tensor | None = None

    def _pack(self, x: torch.Tensor) -> None:
        with torch.inference_mode(False), torch.no_grad():
            plain = self.weight_dense.to_mkldnn()
            self.weight_dense = None  # freed before the reorder: two copies of the layer at most, not three
            self.packed = torch._C._nn.mkldnn_reorder_conv2d_weight(plain, self.padding, self.stride, self.dilation,
                                                                    self.groups, list(x.shape))
        del plain
        # the dense copies freed layer by layer would otherwise stay resident as holes in the heap: handing them
        # back at once keeps the first call's peak near one copy of the weights (WRN50: 1258 -> 1159 MB; ~1 ms each)
        release_free_memory()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != self.dtype or x.device.type != "cpu":
            raise ValueError(f"PackedConv2d runs {self.dtype} on the CPU, got {x.dtype} on {x.device.type}: prepare "
                             "the model with dtype= for reduced precision (autocast needs prepack=False)")
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
                          prepack: bool | None = None, compile: bool = False, consume: bool = False,
                          dtype: torch.dtype | str | None = None) -> RDModel:
    """An inference-only version of ``model`` on ``device`` (a copy unless ``inplace`` or ``consume``: the
    training model is left as it is); its maps equal the unprepared model's within float rounding (~1e-6).
    ``consume=True``: the caller hands ``model`` over because scoring is all that is left to do with it (the
    end of a run, a process that only scores): it is converted in place and returned, so one copy of the
    weights exists, and the heap's free pages are handed back to the OS afterwards. Either way the prepared
    model holds no submodule that scoring never runs (``unused_modules``), and packed convolutions keep no
    dense weight beside the packed one. The rewrites:

    * eval mode; ``fold_bn``: batch norms folded into the convolutions before them;
    * ``pixel_shuffle``: the decoder's 2x2 stride-2 transposed convolutions as 1x1 convolution + pixel shuffle;
    * ``channels_last`` (default: on CPU; on CUDA off unless asked, not measured here): NHWC weights;
    * ``prepack`` (default: on CPU with channels_last when oneDNN is there, not with ``compile``):
      ``PackedConv2d`` everywhere;
    * ``dtype`` (float32 or bfloat16, or their names; None: the model's own, float64 for a float64 run, whose
      copy is never packed: oneDNN has no float64 kernels): the weights and the networks' arithmetic;
      ``fast_predict`` casts the images to it and bfloat16 features back to float32 for the maps. bfloat16 on the
      CPU: the weights are cast once (after folding, in float32) and packed like float32 ones, where autocast
      casts all of them again at every call and cannot use packed weights. Measured (2-core AVX512-BF16 CPU,
      wide_resnet50_2 256 px, batch 8, networks only, same run): float32 packed 2.86 images/s; bf16 autocast
      4.2 (1.5x); bf16 weights 5.8 (2.0x); bf16 weights packed 6.2 (2.2x). The arithmetic equals autocast's
      (convolutions, adds and ReLUs in bf16; batch norm is folded), the maps differ from float32 by bf16
      rounding;
    * ``compile``: ``torch.compile`` of the teacher, the bottleneck and the decoder, after the rewrites. Off
      by default: on the CI CPU compiling resnet18 took 29 s and inference ran no faster than prepacked
      eager; on CUDA it is measured by tests/benchmarks/gpu_check.py.

    Measured (the 2-core CI CPU, AVX-512 with bf16; torch 2.14, wide_resnet50_2 256 px, per image, ratio to the authors'
    procedure 0.57 s): batch 1: ``rdbench.engine.evaluate.predict_maps`` 0.79 (no layer4, torch maps), +channels_last
    0.79, +fold 0.80, +pixel shuffle 0.82, +prepack 0.58 (prepack alone 0.63); batch 8: predict_maps 0.82,
    +channels_last 0.65, +fold 0.58, +pixel shuffle/prepack 0.59. resnet18 batch 1: 0.86, 0.78, 0.69,
    0.69, 0.57. The prepared model is for inference only (``rdbench_inference_only``) and, prepacked,
    for the CPU only."""
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    unused = unused_modules(model)
    if inplace or consume:
        for parent, name in unused:
            setattr(parent, name, None)
    else:  # the copy skips what scoring never runs (the memo maps those modules to None)
        model = copy.deepcopy(model, memo={id(getattr(parent, name)): None for parent, name in unused})
    model.to(device).eval()
    if fold_bn:
        fold_batchnorm(model)
    if pixel_shuffle:
        replace_deconvs(model)
    own = model_dtype(model)
    if dtype is None:
        dtype = own
    if isinstance(dtype, str):  # a name, as JSON settings carry it ("bfloat16")
        dtype = getattr(torch, dtype, None)
    if dtype not in (torch.float32, torch.bfloat16) and not (dtype == own == torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16 (or a float64 model's own), got {dtype} "
                         "(fp16: autocast on CUDA)")
    if dtype != own:
        model.to(dtype)  # after folding: the folded weights are computed in float32, then rounded once
    if prepack is None:
        prepack = device.type == "cpu" and bool(channels_last) and _prepack_supported(dtype) and not compile
    if prepack:
        if device.type != "cpu" or not channels_last or not _prepack_supported(dtype):
            raise ValueError("prepack needs the CPU, channels_last and oneDNN (torch.backends.mkldnn), and for "
                             "bfloat16 a CPU with native bf16 (AVX512 or AMX)")
        if compile:
            raise ValueError("prepack and compile exclude each other: the packed weights are laid out at the "
                             "first call, which torch.compile cannot trace")
        prepack_convolutions(model)  # before channels_last: the packed layers take the NCHW weights without a copy
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        for name in ("teacher", "bottleneck", "decoder"):
            # dynamic=False: one graph per batch shape, each specialised (a run has two at most)
            setattr(model, name, torch.compile(getattr(model, name), dynamic=False))
    model.rdbench_channels_last = bool(channels_last)
    model.rdbench_prepacked = bool(prepack)
    model.rdbench_compiled = bool(compile)
    model.rdbench_dtype = dtype
    model.rdbench_inference_only = bool(fold_bn or prepack or pixel_shuffle)
    if consume:
        release_free_memory()  # the batch norms, the replaced deconvolutions and conv4 were freed just now
    return model


def inference_options(amp: str | None, device: torch.device) -> dict:
    """``prepare_for_inference``'s options for scoring under ``amp``: on the CPU, bf16 is a bfloat16 copy (its
    weights cast once and packed); elsewhere an amp run autocasts, and keeps the other rewrites without packed
    convolutions, which run in the weights' dtype only."""
    if amp in (None, "none"):
        return {}
    if amp == "bf16" and torch.device(device).type == "cpu":
        return {"dtype": "bfloat16"}
    return {"prepack": False}


CPU_MICRO_BATCH_BYTES = 4 * 2**20
# bfloat16 copies: larger micro-batches pay (wide_resnet50_2 256 px, packed bf16 weights: 5.7 images/s one image
# at a time, 5.8 at 2, 6.2 at 8), the bf16 kernels' blocking wants more rows than the float32 ones
CPU_MICRO_BATCH_BYTES_LOW = 16 * 2**20


def cpu_micro_batch(model: RDModel, image_size: tuple[int, int]) -> int:
    """Images per forward pass on the CPU: as many as keep the teacher's layer1 map of the micro-batch within
    CPU_MICRO_BATCH_BYTES (4 MiB), so that a layer's output is still in cache when the next layer reads
    it. Measured with prepared models at 256 px: wide_resnet50_2 (4 MiB per image) is fastest one image at
    a time (0.32 s/image vs 0.35 at batch 8), resnet18 (1 MiB) at 2-4 images (0.052 vs 0.059 at batch 1)."""
    spec = BACKBONES.get(model.backbone)
    dtype = model_dtype(model)
    per_image = 64 * spec.expansion * (image_size[0] // 4) * (image_size[1] // 4) * dtype.itemsize
    budget = CPU_MICRO_BATCH_BYTES_LOW if dtype in (torch.bfloat16, torch.float16) else CPU_MICRO_BATCH_BYTES
    return max(1, budget // per_image)


@torch.inference_mode()
def fast_predict(model: RDModel, images: torch.Tensor, layers: tuple[int, ...] = (1, 2, 3), sigma: float = 4.0,
                 amp: str | None = None, micro_batch: int | None = None, keep_layers: bool = False
                 ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Smoothed anomaly maps (N x S x S float32, on the images' device) of a batch, like
    ``rdbench.engine.evaluate.predict_maps``, plus channels_last input for a prepared model, an optional
    autocast of the networks (the maps: float32 per layer, summed and smoothed in float64), and on the CPU the
    batch run in micro-batches (``micro_batch``; default ``cpu_micro_batch``; the whole batch on CUDA).
    ``keep_layers``: also return each layer's raw map (N x L x S x S float32, ``scoring.layer_maps``), from
    which the maps of any subset of the layers follow without another forward pass (Table 7)."""
    dtype = model_dtype(model)
    low = dtype in (torch.bfloat16, torch.float16)  # a reduced-precision copy: its own dtype, no autocast
    if amp is not None and amp != "none" and not low and getattr(model, "rdbench_prepacked", False):
        raise ValueError("amp needs a model prepared with prepack=False or with dtype=torch.bfloat16 (prepacked "
                         "float32 convolutions run float32)")
    if micro_batch is None:
        micro_batch = (cpu_micro_batch(model, tuple(images.shape[-2:])) if images.device.type == "cpu"
                       else images.shape[0])
    if images.shape[0] > micro_batch:
        parts = [fast_predict(model, images[i:i + micro_batch], layers, sigma, amp, micro_batch, keep_layers)
                 for i in range(0, images.shape[0], micro_batch)]
        if keep_layers:
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        return torch.cat(parts)
    size = images.shape[-2:]
    if images.dtype != dtype:  # a bfloat16 copy, or a float64 model (RunConfig.dtype)
        images = images.to(dtype)
    if getattr(model, "rdbench_channels_last", False):
        images = images.contiguous(memory_format=torch.channels_last)
    with autocast(images.device, None if low else amp):
        t = model.teacher(images)
        s = model.student(t)
    t, s = select_layers(t, layers), select_layers(s, layers)
    if low or (amp is not None and amp != "none"):
        t, s = [x.float() for x in t], [x.float() for x in s]
    per_layer = layer_maps(t, s, size)
    smoothed = gaussian_blur(sum_layers(per_layer), sigma)
    return (smoothed, per_layer) if keep_layers else smoothed

