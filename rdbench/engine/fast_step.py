"""What makes a training step cheaper without changing its arithmetic beyond float rounding (tests/test_fast_step.py):
a fused Adam, convolutions whose output is one pixel as one matrix product, and on Linux a heap that keeps the
step's freed buffers for the next step. The first two change the rounding, so they apply where the step is
small (32 px inputs, Table 4), and runs at 64 px and above stay bit-identical to the committed baselines.

Why (resnet18 at 32 px, batch 16, the FashionMNIST protocol of Table 4, on a 2-core CPU): the student step is
3.7 GFLOP on weights of 64 MB, so per-step costs that scale with the weights, not the maps, dominate it.
Measured per step, medians of alternating runs on a shared machine: the plain step 115-140 ms; fused Adam (one
pass over parameters, gradients and both moments instead of one per operation) 90-115 ms; + one-pixel
convolutions as matrix products 65-87 ms (oneDNN ran the 512-channel 3x3 convolutions of the OCBE's 1x1 map at
7-14 GFLOP/s, its backward slowest); + heap reuse 60-75 ms. ``torch.compile`` of the student and loss took 63 s
to compile and ran slower (160 vs 117 ms), so it is not used.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from rdbench.engine.heap import reuse_heap

__all__ = ["adam", "one_pixel_convolutions", "reuse_heap"]


def adam(params: list[nn.Parameter], lr: float, betas: tuple[float, float], device: torch.device,
         small_images: bool = False, mixed_precision: bool = False) -> torch.optim.Adam:
    """torch's Adam, fused (one kernel over parameters, gradients and both moments) on CUDA, and on the CPU for
    small images (``small_images``: inputs under 64 px, whose student maps shrink to one pixel). Fused, it
    differs from the default implementation by float rounding (1-2 ulp per update), and float rounding steers
    training (docs/parity.md): over the demo's 30 epochs at 128 px it moved gravel's PRO by 3.8 points, beyond
    the committed baseline's 3-point floor, for a gain of a few per cent of the step there (Adam is ~1% of a
    wide_resnet50_2 step at 256 px, batch 16). So on the CPU it is fused only where it pays: at 32 px it is a
    quarter of the step; and under mixed precision (``mixed_precision``: a bf16/fp16 autocast run), whose
    arithmetic already rounds to bf16 (far coarser than Adam's last bits; no committed baseline is bf16) and
    whose step is short enough for the unfused Adam to matter (wide_resnet50_2, 256 px, batch 4, bf16: 154 ms
    of a 1.75 s step unfused, 42 ms fused; float32 steps take 3.05 s)."""
    fused = device.type == "cuda" or (device.type == "cpu" and (small_images or mixed_precision))
    try:
        return torch.optim.Adam(params, lr=lr, betas=betas, fused=fused or None)
    except (RuntimeError, TypeError):  # an older torch, or a device without the fused kernel
        return torch.optim.Adam(params, lr=lr, betas=betas)


def _one_pixel_forward(self: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
                       ) -> torch.Tensor:
    n, _, h, w = x.shape
    (kh, kw), (ph, pw), (sh, sw) = weight.shape[-2:], self.padding, self.stride
    if (h + 2 * ph - kh) // sh + 1 != 1 or (w + 2 * pw - kw) // sw + 1 != 1:
        return nn.Conv2d._conv_forward(self, x, weight, bias)
    # One output pixel: the convolution is the dot product of the zero-padded kh x kw window at the top left
    # with each filter, i.e. one matrix product (window x weight). The padded zeros are multiplied too (a 3x3
    # filter on a 1x1 map: 9x the useful work), and still it beats slicing the used taps out of the weight, whose
    # gradient then has to be scattered back into a zeroed full-size tensor at every step.
    window = F.pad(x, (pw, max(0, kw - w - pw), ph, max(0, kh - h - ph)))[:, :, :kh, :kw]
    return F.linear(window.reshape(n, -1), weight.reshape(weight.shape[0], -1), bias).reshape(n, -1, 1, 1)


def _eligible(m: nn.Module) -> bool:
    return (type(m) is nn.Conv2d and m.groups == 1 and tuple(m.dilation) == (1, 1) and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


@contextlib.contextmanager
def one_pixel_convolutions(modules: Iterable[nn.Module]) -> Iterator[int]:
    """While active, every plain ``nn.Conv2d`` in ``modules`` computes a one-pixel output as one matrix product
    (other outputs as before). Yields how many convolutions were switched. Installed on the instances, removed on
    exit; a deep copy taken meanwhile (an evaluation's inference copy) computes the same maps either way."""
    convs = [m for mod in modules for m in mod.modules() if _eligible(m) and "_conv_forward" not in vars(m)]
    for m in convs:
        m._conv_forward = types.MethodType(_one_pixel_forward, m)
    try:
        yield len(convs)
    finally:
        for m in convs:
            vars(m).pop("_conv_forward", None)
