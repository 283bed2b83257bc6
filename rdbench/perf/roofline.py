"""How close to the machine's peak (``rdbench profile``): the pipeline's FLOPs, counted by
``torch.utils.flop_counter``, times the measured images/s, against a calibration measured in the same run
(a large matrix product and a large convolution in float32 and bfloat16; on CUDA also TF32).

The calibration stands in for the peak: it is what this machine, under its present load, gives the kernels the
pipeline is made of. The FLOPs are those of the convolutions and matrix products (flop_counter counts no
element-wise operation); they are the same for the prepared model (batch norm folded, pixel-shuffle
upsampling: the same products) and are counted on the plain modules at batch 1 (inference) and batch 2
(training: batch norm in train mode needs two images), per image.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from rdbench.engine.device import bf16_native, synchronize
from rdbench.engine.losses import distillation_loss
from rdbench.models.rd import RDModel, select_layers

__all__ = ["calibrate", "pipeline_flops", "roofline"]

# sizes of the calibration: large enough for the kernels' best blocking, ~0.1 s each on a 2-core CPU
_MATMUL_N = 2048
_CONV_SHAPE = (8, 256, 32, 32)  # N, C, H, W with a 3x3 convolution of C -> C channels


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def pipeline_flops(model: RDModel, image_size: int, layers: tuple[int, ...] = (1, 2, 3)) -> dict:
    """FLOPs per image: the teacher to layer3, the student (OCBE + decoder) forward, their sum, and a training
    step of the student (forward + backward, the teacher's features given). ``model`` is left as it was."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    x = torch.zeros(1, 3, image_size, image_size, device=device)
    with torch.no_grad():
        teacher = count_flops(lambda: model.teacher(x))
        t = model.teacher(x)
        student = count_flops(lambda: model.student(t))
    x2 = torch.zeros(2, 3, image_size, image_size, device=device)
    with torch.no_grad():
        t2 = model.teacher(x2)
    model.train()
    params = model.trainable_parameters()
    saved = [p.grad for p in params]

    def step() -> None:
        s = model.student(t2)
        distillation_loss("flat", select_layers(t2, layers), select_layers(s, layers)).backward()

    state = {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}
    train = count_flops(step) / 2
    model.load_state_dict(state, strict=False)  # the train-mode pass moved the batch norms' running statistics
    for p, g in zip(params, saved):
        p.grad = g
    model.train(was_training)
    return {"teacher": teacher, "student": student, "inference": teacher + student, "train_step": train}


def _rate(fn: Callable[[], object], flops: float, device: torch.device, repeats: int) -> float:
    fn()  # warm-up: kernels chosen, buffers allocated
    times = []
    for _ in range(repeats):
        synchronize(device)
        t0 = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return flops / statistics.median(times) / 1e9


def calibrate(device: torch.device | str = "cpu", repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of a large matmul and a large 3x3 convolution per dtype on ``device``: ``matmul_float32``,
    ``conv_float32``, ``matmul_bfloat16``, ``conv_bfloat16`` and on CUDA ``matmul_tf32``. The bfloat16 pair is
    left out where bf16 is only emulated (``bf16_native``): there it would take minutes (0.85 GFLOP/s for the
    matmul on an AVX2 CPU) to measure a peak no bf16 run should be held to."""
    device = torch.device(device)
    n, (b, c, h, w) = _MATMUL_N, _CONV_SHAPE
    out: dict[str, float] = {}
    g = torch.Generator().manual_seed(0)
    a0, b0 = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    x0, w0 = torch.randn(b, c, h, w, generator=g), torch.randn(c, c, 3, 3, generator=g)
    conv_flops = 2 * b * c * c * 9 * h * w
    dtypes = [("float32", torch.float32)] + ([("bfloat16", torch.bfloat16)] if bf16_native(device.type) else [])
    for name, dtype in dtypes:
        a1, b1 = a0.to(device, dtype), b0.to(device, dtype)
        x1, w1 = x0.to(device, dtype), w0.to(device, dtype)
        if device.type == "cpu":  # oneDNN's layout for the CPU convolutions, as the fast path uses
            x1 = x1.contiguous(memory_format=torch.channels_last)
            w1 = w1.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            out[f"matmul_{name}"] = _rate(lambda a=a1, b=b1: a @ b, 2 * n**3, device, repeats)
            out[f"conv_{name}"] = _rate(lambda x=x1, w=w1: torch.nn.functional.conv2d(x, w, padding=1), conv_flops,
                                        device, repeats)
    if device.type == "cuda":
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            a1, b1 = a0.to(device), b0.to(device)
            out["matmul_tf32"] = _rate(lambda: a1 @ b1, 2 * n**3, device, repeats)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before
    return out


def roofline(flops: dict, rates: dict[str, float | None], calibration: dict[str, float], dtype: str = "float32"
             ) -> dict:
    """Achieved GFLOP/s of each measured rate (images/s) and its fraction of the best calibration of ``dtype``.
    ``rates``: {"inference_batch1", "inference_batch", "train"}: images/s or None."""
    peak = max((v for k, v in calibration.items() if k.endswith(dtype)), default=None)  # None: emulated bf16
    per_image = {"inference_batch1": flops["inference"], "inference_batch": flops["inference"],
                 "train": flops["train_step"]}
    figures = {}
    for key, ips in rates.items():
        if ips is None:
            continue
        achieved = per_image[key] * ips / 1e9
        figures[key] = {"images_per_s": ips, "gflop_per_image": per_image[key] / 1e9, "achieved_gflops": achieved,
                        "fraction_of_peak": achieved / peak if peak else None}
    return {"flops_per_image": flops, "calibration_gflops": calibration, "peak_dtype": dtype, "peak_gflops": peak,
            "figures": figures,
            "description": "FLOPs of convolutions and matrix products (torch.utils.flop_counter) x images/s, as a "
                           f"fraction of the best {dtype} calibration (large matmul and 3x3 convolution) measured "
                           "in the same run"}
