"""Training: the authors' loop (Adam on decoder + bottleneck, teacher frozen), with checkpoints and their
schedule (``CheckpointSchedule``), resume, a progress bar, events for a caller (``TrainEvents``), and a NaN guard."""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from rdbench.config import RunConfig
from rdbench.engine.device import autocast, check_amp, model_dtype
from rdbench.engine.fast_step import adam, one_pixel_convolutions, reuse_heap
from rdbench.engine.feature_cache import TeacherFeatureCache
from rdbench.engine.losses import distillation_loss
from rdbench.models.rd import RDModel, select_layers
from rdbench.records.store import replace_atomically

# Preloading the (deterministic, un-augmented) training set saves re-decoding and resizing every
# image each epoch; above this budget the images are read per batch instead.
PRELOAD_BUDGET_BYTES = 2 * 1024**3
# The default (adaptive) checkpoint schedule keeps the time spent writing checkpoints within this share of the
# training time: a wide_resnet50_2 checkpoint with Adam state is 1.04 GB, measured 1.4-3.4 s to write on a 2-core VM.
CHECKPOINT_TIME_SHARE = 0.05


class UnreadableCheckpoint(RuntimeError):
    """A resume checkpoint that cannot be read (truncated, not a torch file): set aside, and the run starts over."""


class TrainingError(RuntimeError):
    def __init__(self, message: str, epoch: int | None = None, loss_curve: list[float] | None = None):
        super().__init__(message)
        self.epoch = epoch
        self.loss_curve = loss_curve or []  # what was learned before the failure is kept in the record


@dataclass
class TrainResult:
    loss_curve: list[float] = field(default_factory=list)  # mean loss per epoch
    seconds: float = 0.0  # this session only (not the epochs restored from a checkpoint)
    images_seen: int = 0  # this session only
    resumed_from_epoch: int = 0
    feature_cache: dict = field(default_factory=dict)  # TeacherFeatureCache.info() of this session
    checkpoints: int = 0  # resume checkpoints written this session
    checkpoint_write_s: float = 0.0  # the time they took, in total
    checkpoint_bytes: int = 0  # the size of the last one


class TrainEvents:
    """What a caller hears of a run while it trains (a sweep's progress bar, a Ray worker's reports to the
    driver). This base class hears nothing."""

    def model_ready(self, model: RDModel) -> None:
        """Training is about to start: ``model`` is on its device, as built (before a checkpoint is restored)."""

    def step(self, epoch: int, loss: torch.Tensor) -> None:
        """One optimiser step of epoch ``epoch`` (1-based) was taken; ``loss`` is its loss before the step (a
        tensor on the device: reading it makes the CPU wait for the GPU, so a listener that needs no value should
        not)."""

    def resumed(self, epoch: int) -> None:
        """Training continues after ``epoch`` epochs restored from a resume checkpoint."""

    def epoch(self, epoch: int, total: int) -> None:
        """Epoch ``epoch`` of ``total`` is done (and its checkpoint, if one was due, written)."""

    def evaluated(self, result) -> None:
        """The run's final evaluation (``rdbench.engine.evaluate.EvalResult``), while it still holds the maps."""


class CheckpointSchedule:
    """When the resume checkpoint is written, and what writing cost.

    ``every_s``: after an epoch once this many seconds passed since the last write (0: every epoch, inf: never).
    None (the default): adaptive, so that writing takes at most CHECKPOINT_TIME_SHARE of the training time. The
    first checkpoint comes after the first epoch: it measures what a write costs, and a run killed after it
    loses one epoch at most. Each later one only when the writes so far plus one more as long as the last fit
    that share of the time elapsed since training started. A slow disk or a large model so gets fewer
    checkpoints, a fast one more; a checkpoint costing more than the share of a whole epoch comes every few
    epochs."""

    def __init__(self, every_s: float | None, start: float):
        if every_s is not None and every_s < 0:
            raise ValueError(f"checkpoint_every_s must be >= 0 or None (adaptive), got {every_s}")
        self.every_s, self.start, self.last = every_s, start, start
        self.count, self.write_s, self.last_write_s, self.bytes = 0, 0.0, 0.0, 0

    def due(self, now: float) -> bool:
        if self.every_s is not None:
            return now - self.last >= self.every_s
        if self.count == 0:
            return True
        return self.write_s + self.last_write_s <= CHECKPOINT_TIME_SHARE * (now - self.start)

    def wrote(self, began: float, ended: float, nbytes: int) -> None:
        self.count += 1
        self.last_write_s = ended - began
        self.write_s += self.last_write_s
        self.last, self.bytes = ended, nbytes


class _Batches:
    """Shuffled mini-batches of a dataset, either from memory or read on the fly."""

    def __init__(self, dataset: Dataset, batch_size: int):
        self.dataset, self.batch_size, self.n = dataset, batch_size, len(dataset)
        if self.n == 0:
            raise TrainingError("the training set is empty")
        first = dataset[0]
        self.one_by_one_bottleneck = first.shape[-1] < 64
        self.cache = None
        if first.numel() * first.element_size() * self.n <= PRELOAD_BUDGET_BYTES:
            self.cache = torch.stack([first] + [dataset[i] for i in range(1, self.n)])

    def epoch(self, generator: torch.Generator):
        for idx in self.epoch_indices(generator):
            yield self.images(idx)

    def images(self, idx: torch.Tensor) -> torch.Tensor:
        if self.cache is not None:
            return self.cache[idx]
        return torch.stack([self.dataset[int(i)] for i in idx])

    def epoch_indices(self, generator: torch.Generator):
        """The image indices of each batch of one epoch (one randperm of ``generator`` per epoch)."""
        order = torch.randperm(self.n, generator=generator)
        stop = self.n
        if self.one_by_one_bottleneck and self.n > self.batch_size and self.n % self.batch_size == 1:
            # A last batch of one image makes train-mode batch norm fail when the bottleneck is 1x1
            # (32 px inputs, Table 4); it is dropped. The authors' DataLoader would crash there. A deliberate
            # deviation (docs/parity.md); no class of MNIST, FashionMNIST or CIFAR-10 has 16k + 1 images.
            stop = self.n - 1
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]


def _save_checkpoint(path: Path, model: RDModel, opt: torch.optim.Optimizer, epoch: int,
                     result: TrainResult, generator: torch.Generator, config: RunConfig,
                     scaler: torch.amp.GradScaler, carry: dict | None = None) -> int:
    """Write the resume checkpoint (replacing the run's previous one) and return its size in bytes."""
    state = {"kind": "resume", "epoch": epoch, "bottleneck": model.bottleneck.state_dict(),
             "decoder": model.decoder.state_dict(), "optimizer": opt.state_dict(), "loss_curve": result.loss_curve,
             "generator": generator.get_state(), "config": config.to_dict(), "config_hash": config.hash(),
             "scaler": scaler.state_dict(),
             # as JSON text: metric values may be numpy floats, which a weights_only load refuses to unpickle
             "carry": json.dumps(carry or {})}
    # a checkpoint is never half-written (on disk before the rename, the temp file removed on a full disk), and
    # there is one per run
    replace_atomically(path, lambda f: torch.save(state, f), binary=True, what="checkpoints",
                       where="--results or --checkpoint-dir folder")
    return path.stat().st_size


def _try_checkpoint(path: Path, *args) -> int | None:
    """``_save_checkpoint``, or a warning and None when it cannot be written (a full disk, a lost mount): the run
    goes on without it and keeps the previous checkpoint, which still resumes, from an earlier epoch. torch's
    zip writer reports a failed write as RuntimeError, the file system as OSError."""
    try:
        return _save_checkpoint(path, *args)
    except (OSError, RuntimeError) as exc:
        warnings.warn(f"resume checkpoint {path} not written ({type(exc).__name__}: {exc}); training goes on, and an "
                      "interruption would resume from the previous checkpoint (if any) or start over", stacklevel=2)
        return None


def save_model(path: Path, model: RDModel, config: RunConfig) -> None:
    """The trained bottleneck and decoder with their config (no optimiser state: a third the size)."""
    state = {"kind": "model", "bottleneck": model.bottleneck.state_dict(), "decoder": model.decoder.state_dict(),
             "config": config.to_dict(), "config_hash": config.hash(), "teacher_weights": model.weights_info}
    replace_atomically(path, lambda f: torch.save(state, f), binary=True, what="trained models",
                       where="--results or --checkpoint-dir folder")


def load_checkpoint(path: Path, model: RDModel, config: RunConfig | None = None) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code from disk
    except Exception as exc:
        raise UnreadableCheckpoint(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if config is not None and state.get("config_hash") != config.hash():
        raise TrainingError(f"checkpoint {path} was written for another config (hash "
                            f"{state.get('config_hash')}, this run {config.hash()}); delete it or change --resume")
    model.bottleneck.load_state_dict(state["bottleneck"])
    model.decoder.load_state_dict(state["decoder"])
    return state


def train(model: RDModel, dataset: Dataset, config: RunConfig, device: torch.device,
          checkpoint: Path | None = None, resume: bool = False, progress: bool = True,
          on_epoch: Callable[[int, float], None] | None = None, checkpoint_every_s: float | None = None,
          feature_cache_bytes: int | None = None, carry: dict | None = None,
          events: TrainEvents | None = None) -> TrainResult:
    """Train ``model`` in place. The seed of the shuffling generator is the run's seed, so a run is
    repeatable; resuming restores weights, optimiser and generator state and continues exactly.

    A resume checkpoint is written after an epoch as ``CheckpointSchedule(checkpoint_every_s)`` says (None:
    adaptive, writing at most 5% of the time), never after the last epoch (nothing is left to resume). It
    replaces the previous one. ``carry``: the caller's state that travels in the checkpoint (JSON types; e.g.
    the metric curve evaluated so far): on resume its keys are replaced by the saved ones before the first
    epoch. ``on_epoch`` runs before the epoch's checkpoint, so what it adds to ``carry`` is saved with it.

    The frozen teacher's features of every training image are cached after the first epoch within
    ``feature_cache_bytes`` (None: ``rdbench.engine.feature_cache.default_budget(device)``, 4 GiB at most on CPU;
    0: no cache); results are bit-identical to recomputing them on CPU (see rdbench.engine.feature_cache).

    ``config.amp`` ("bf16"/"fp16") runs the student's forward pass under autocast; the teacher's features
    (and so the cache) stay float32 and the loss is computed in float32. fp16 adds dynamic loss scaling
    (``torch.amp.GradScaler``), without which its small gradients underflow to zero; bf16 has float32's
    exponent range and needs none. A loss that is not finite fails the run at the end of its epoch (also
    an fp16 overflow that the scaler would have skipped: a run is either float-clean or reported)."""
    amp = check_amp(config.amp, device)
    model.to(device)
    if device.type == "cpu":
        reuse_heap()  # rdbench.engine.fast_step: the step's buffers are reused, not zero-filled again by the kernel
    batches = _Batches(dataset, config.batch_size)
    # fused on CUDA, and on the CPU for small images (32 px, where Adam is a quarter of the step) and under amp
    opt = adam(model.trainable_parameters(), config.lr, config.betas, device, batches.one_by_one_bottleneck,
               mixed_precision=amp != "none")
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")  # a pass-through when disabled
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult()
    start_epoch = 0
    if events is not None:
        events.model_ready(model)
    state = None
    if resume and checkpoint is not None and checkpoint.is_file():
        try:
            state = load_checkpoint(checkpoint, model, config)
        except UnreadableCheckpoint as exc:  # set aside, not deleted (someone may want to look); not a failed run
            aside = checkpoint.with_name(checkpoint.name + ".corrupt")
            os.replace(checkpoint, aside)
            warnings.warn(f"{exc}; moved aside to {aside.name}, training starts over", stacklevel=2)
    if state is not None:
        if state.get("kind") != "resume":
            raise TrainingError(f"{checkpoint} is not a resume checkpoint (it has no optimiser state)")
        opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        result.loss_curve = list(state["loss_curve"])
        if carry is not None:
            carry.update(json.loads(state.get("carry") or "{}"))  # a checkpoint of an older rdbench has none
        start_epoch = result.resumed_from_epoch = state["epoch"]
        model.to(device)
        if events is not None:
            events.resumed(start_epoch)
    dtype = model_dtype(model)  # the images enter in the networks' dtype (float64 for RunConfig.dtype "float64")
    features = TeacherFeatureCache(model.teacher, batches.n, device, feature_cache_bytes)
    t0 = time.perf_counter()
    schedule = CheckpointSchedule(checkpoint_every_s, t0)
    bar = tqdm(range(start_epoch, config.epochs), desc=f"train {config.category}", disable=not progress,
               initial=start_epoch, total=config.epochs, leave=False)
    # one-pixel maps of the student (32 px inputs) as matrix products: rdbench.engine.fast_step
    with one_pixel_convolutions((model.bottleneck, model.decoder)):
        for epoch in bar:
            model.train()
            # The epoch's loss is summed on the device (in float64: the same bits as summing Python floats) and
            # read once per epoch: reading it at every step would make the CPU wait for the GPU at every step.
            total = torch.zeros((), dtype=torch.float64, device=device)
            count = 0
            for idx in batches.epoch_indices(generator):
                t = features.features(idx, lambda idx=idx: batches.images(idx).to(device, dtype, non_blocking=True))
                with autocast(device, amp):
                    s = model.student(t)
                if amp != "none":
                    s = [x.float() for x in s]
                loss = distillation_loss(config.loss, select_layers(t, config.layers),
                                         select_layers(s, config.layers))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                if events is not None:
                    events.step(epoch + 1, loss.detach())
                total += loss.detach().double() * idx.numel()
                count += idx.numel()
            mean = float(total) / count
            if not math.isfinite(mean):  # the epoch is not recorded and no checkpoint is written from it
                raise TrainingError(f"loss became {mean} at epoch {epoch + 1}; lower --lr or check the input data",
                                    epoch=epoch + 1, loss_curve=result.loss_curve)
            result.loss_curve.append(mean)
            result.images_seen += count
            bar.set_postfix(loss=f"{mean:.4f}")
            if on_epoch is not None:
                on_epoch(epoch + 1, mean)
            if checkpoint is not None and epoch + 1 < config.epochs and schedule.due(time.perf_counter()):
                began = time.perf_counter()
                nbytes = _try_checkpoint(checkpoint, model, opt, epoch + 1, result, generator, config, scaler, carry)
                if nbytes is not None:
                    schedule.wrote(began, time.perf_counter(), nbytes)
            if events is not None:
                events.epoch(epoch + 1, config.epochs)
    result.seconds = time.perf_counter() - t0
    result.feature_cache = features.info()
    result.checkpoints, result.checkpoint_write_s = schedule.count, schedule.write_s
    result.checkpoint_bytes = schedule.bytes
    return result
