"""The disk a sweep will fill, estimated before it trains (kept models, the live resume checkpoint, the
records), and the refusal when the results folder has less free space than that."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import torch

from rdbench.config import RunConfig
from rdbench.models.rd import build_rd_model

# A record on disk: per-image scores and paths plus a gallery of a few PNG inputs, masks and maps. Measured at
# 256 px on noise images (which compress worst): 0.6 MB; rounded up.
RECORD_BYTES = 1 * 2**20


@cache
def state_bytes(backbone: str, bottleneck: str) -> tuple[int, int]:
    """(kept model file, resume checkpoint) bytes of a backbone and bottleneck, from the architecture alone.

    The model file holds the bottleneck and decoder (parameters and batch-norm buffers, float32); a checkpoint
    adds Adam's two moments of every trainable parameter. Built on the meta device: no memory, no weights
    read, well under a second even for wide_resnet50_2; the CPU random numbers are left as they were."""
    with torch.random.fork_rng(devices=[]), torch.device("meta"):
        model = build_rd_model(backbone, "none", bottleneck)
    saved = sum(t.numel() * t.element_size() for m in (model.bottleneck, model.decoder)
                for t in m.state_dict().values())
    moments = 2 * sum(p.numel() * p.element_size() for p in model.trainable_parameters())
    return saved, saved + moments


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


@dataclass(frozen=True)
class DiskEstimate:
    models: int = 0  # kept trained models (--keep-models all)
    n_models: int = 0
    checkpoint: int = 0  # the live resume checkpoint, twice: the old one stays until its successor is written
    records: int = 0
    n_records: int = 0

    @property
    def total(self) -> int:
        return self.models + self.checkpoint + self.records

    def describe(self) -> str:
        parts = [f"records {self.n_records} x {format_bytes(RECORD_BYTES)}"]
        if self.n_models:
            runs = f"{self.n_models} run" + "s" * (self.n_models != 1)
            parts.insert(0, f"kept models {format_bytes(self.models)} ({runs})")
        if self.checkpoint:
            parts.insert(1 if self.n_models else 0, f"resume checkpoint {format_bytes(self.checkpoint)}")
        return f"about {format_bytes(self.total)}: " + ", ".join(parts)


def estimate(configs: Sequence[RunConfig], keep_models: bool, checkpoints_here: bool) -> DiskEstimate:
    """What ``configs`` will write to the results folder. ``checkpoints_here``: resume checkpoints are written
    there (the local executor; Ray workers write theirs to --checkpoint-dir or their own temp folder). One
    run trains at a time locally, so one checkpoint is live at a time (removed when its run succeeds)."""
    if not configs:
        return DiskEstimate()
    sizes = [state_bytes(c.backbone, c.bottleneck) for c in configs]
    models = sum(m for m, _ in sizes) if keep_models else 0
    checkpoint = 2 * max(c for _, c in sizes) if checkpoints_here else 0
    return DiskEstimate(models=models, n_models=len(configs) if keep_models else 0, checkpoint=checkpoint,
                        records=RECORD_BYTES * len(configs), n_records=len(configs))


def free_bytes(folder: Path | str) -> int:
    """Free space where ``folder`` is or will be created (its nearest existing parent)."""
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def check_space(results_dir: Path | str, need: DiskEstimate, free: int | None = None) -> str | None:
    """None when the results folder has room for ``need``; else the refusal, naming what reduces it."""
    free = free_bytes(results_dir) if free is None else free
    if need.total <= free:
        return None
    ways = []
    if need.models:
        ways.append(f"--keep-models none (saves {format_bytes(need.models)})")
    if need.checkpoint:
        ways.append(f"--checkpoint-every-s inf (no resume checkpoints, saves {format_bytes(need.checkpoint)}; "
                    f"a killed run then starts over)")
    ways += ["fewer runs (--limit-categories, --seeds, one --table at a time)", "another --results folder"]
    return (f"not enough free disk for this sweep in {results_dir}: it will write {need.describe()}, and "
            f"{format_bytes(free)} are free. Nothing was trained. To need less: " + "; ".join(ways))
