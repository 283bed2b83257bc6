"""Device choice and the facts about it that every record carries."""

from __future__ import annotations

import contextlib
import warnings

import torch

from rdbench.config import AMP_CHOICES
from rdbench.records.provenance import bf16_native, device_name  # noqa: F401 (device_name re-exported)
from rdbench.registry import unknown_choice


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for, but this torch build sees no CUDA device; "
                             "use --device cpu or --device auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {name!r}; use auto, cpu, cuda or cuda:N")
    return dev


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # AMP_CHOICES without "none"
RUN_DTYPES = {"float32": torch.float32, "float64": torch.float64}  # RunConfig.dtype -> the networks' dtype


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """The dtype a model computes in: an inference copy says it (``rdbench_dtype``: its packed layers hold no
    parameters), a plain model has its parameters' dtype."""
    dtype = getattr(model, "rdbench_dtype", None)
    if dtype is None:
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return dtype


def check_amp(amp: str | None, device: torch.device | None = None) -> str:
    """``amp`` as one of AMP_CHOICES ("none" for None); fp16 only on CUDA (CPU autocast runs bf16)."""
    amp = "none" if amp is None else amp
    if amp not in AMP_CHOICES:
        raise ValueError(unknown_choice("amp", amp, AMP_CHOICES))
    if amp == "fp16" and device is not None and device.type != "cuda":
        raise ValueError("fp16 autocast is for CUDA; use bf16 (or none) on the CPU")
    return amp


def warn_if_emulated(amp: str | None, device: torch.device) -> bool:
    """Warn (and say True) when ``amp`` is bf16 on a device that only emulates it (see bf16_native)."""
    if amp != "bf16" or bf16_native(device.type):
        return False
    what = f"this CPU ({device_name(device)}, {torch.backends.cpu.get_cpu_capability()})" if device.type == "cpu" \
        else f"{device_name(device)}"
    warnings.warn(f"--amp bf16: {what} has no native bfloat16, so torch emulates it, far slower than float32 "
                  "(120x for a matmul on an AVX2 CPU); use --amp none here, bf16 needs AVX512/AMX or an "
                  "Ampere-or-later GPU", stacklevel=2)
    return True


def autocast(device: torch.device, amp: str | None):
    """``torch.autocast`` to ``amp``'s dtype (see check_amp), or a no-op context for None/"none"."""
    if check_amp(amp, device) == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])
