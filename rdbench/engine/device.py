"""Device choice and the facts about it that every record carries."""

from __future__ import annotations

import contextlib

import torch

from rdbench.config import AMP_CHOICES
from rdbench.records.provenance import device_name  # noqa: F401 (re-exported: perf and the CLI ask here)
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


def check_amp(amp: str | None, device: torch.device | None = None) -> str:
    """``amp`` as one of AMP_CHOICES ("none" for None); fp16 only on CUDA (CPU autocast runs bf16)."""
    amp = "none" if amp is None else amp
    if amp not in AMP_CHOICES:
        raise ValueError(unknown_choice("amp", amp, AMP_CHOICES))
    if amp == "fp16" and device is not None and device.type != "cuda":
        raise ValueError("fp16 autocast is for CUDA; use bf16 (or none) on the CPU")
    return amp


def autocast(device: torch.device, amp: str | None):
    """``torch.autocast`` to ``amp``'s dtype (see check_amp), or a no-op context for None/"none"."""
    if check_amp(amp, device) == "none":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AMP_DTYPES[amp])
