"""Training: the authors' loop (Adam on decoder + bottleneck, teacher frozen), with checkpoints,
resume, a progress bar, and a NaN guard."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from rdbench.config import RunConfig
from rdbench.engine.device import autocast, check_amp
from rdbench.engine.feature_cache import TeacherFeatureCache
from rdbench.engine.losses import distillation_loss
from rdbench.models.rd import RDModel, select_layers

# Preloading the (deterministic, un-augmented) training set saves re-decoding and resizing every
# image each epoch; above this budget the images are read per batch instead.
PRELOAD_BUDGET_BYTES = 2 * 1024**3


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
            # (32 px inputs, Table 4); it is dropped. The authors' DataLoader would crash there.
            stop = self.n - 1
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]


def _save_checkpoint(path: Path, model: RDModel, opt: torch.optim.Optimizer, epoch: int,
                     result: TrainResult, generator: torch.Generator, config: RunConfig,
                     scaler: torch.amp.GradScaler) -> None:
    state = {"kind": "resume", "epoch": epoch, "bottleneck": model.bottleneck.state_dict(),
             "decoder": model.decoder.state_dict(), "optimizer": opt.state_dict(), "loss_curve": result.loss_curve,
             "generator": generator.get_state(), "config": config.to_dict(), "config_hash": config.hash(),
             "scaler": scaler.state_dict()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a checkpoint is never half-written


def save_model(path: Path, model: RDModel, config: RunConfig) -> None:
    """The trained bottleneck and decoder with their config (no optimiser state: a third the size)."""
    state = {"kind": "model", "bottleneck": model.bottleneck.state_dict(), "decoder": model.decoder.state_dict(),
             "config": config.to_dict(), "config_hash": config.hash(), "teacher_weights": model.weights_info}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, model: RDModel, config: RunConfig | None = None) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickle code from disk
    except Exception as exc:
        raise TrainingError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}") from None
    if config is not None and state.get("config_hash") != config.hash():
        raise TrainingError(f"checkpoint {path} was written for another config (hash "
                            f"{state.get('config_hash')}, this run {config.hash()}); delete it or change --resume")
    model.bottleneck.load_state_dict(state["bottleneck"])
    model.decoder.load_state_dict(state["decoder"])
    return state


def train(model: RDModel, dataset: Dataset, config: RunConfig, device: torch.device,
          checkpoint: Path | None = None, resume: bool = False, progress: bool = True,
          on_epoch: Callable[[int, float], None] | None = None, checkpoint_every_s: float = 60.0,
          feature_cache_bytes: int | None = None) -> TrainResult:
    """Train ``model`` in place. The seed of the shuffling generator is the run's seed, so a run is
    repeatable; resuming restores weights, optimiser and generator state and continues exactly.

    A resume checkpoint is written after an epoch when ``checkpoint_every_s`` have passed since the
    last one (0 = every epoch): on a CPU every epoch of a real run, on a fast GPU at most once a
    minute, since a wide_resnet50_2 checkpoint with Adam state is about 1.1 GB.

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
    opt = torch.optim.Adam(model.trainable_parameters(), lr=config.lr, betas=config.betas)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")  # a pass-through when disabled
    generator = torch.Generator().manual_seed(config.seed)
    result = TrainResult()
    start_epoch = 0
    if resume and checkpoint is not None and checkpoint.is_file():
        state = load_checkpoint(checkpoint, model, config)
        if state.get("kind") != "resume":
            raise TrainingError(f"{checkpoint} is not a resume checkpoint (it has no optimiser state)")
        opt.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        generator.set_state(state["generator"])
        result.loss_curve = list(state["loss_curve"])
        start_epoch = result.resumed_from_epoch = state["epoch"]
        model.to(device)
    batches = _Batches(dataset, config.batch_size)
    features = TeacherFeatureCache(model.teacher, batches.n, device, feature_cache_bytes)
    t0 = last_save = time.perf_counter()
    bar = tqdm(range(start_epoch, config.epochs), desc=f"train {config.category}", disable=not progress,
               initial=start_epoch, total=config.epochs, leave=False)
    for epoch in bar:
        model.train()
        # The epoch's loss is summed on the device (in float64: the same bits as summing Python floats) and
        # read once per epoch: reading it at every step would make the CPU wait for the GPU at every step.
        total = torch.zeros((), dtype=torch.float64, device=device)
        count = 0
        for idx in batches.epoch_indices(generator):
            t = features.features(idx, lambda idx=idx: batches.images(idx).to(device, non_blocking=True))
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
            total += loss.detach().double() * idx.numel()
            count += idx.numel()
        mean = float(total) / count
        if not math.isfinite(mean):  # the epoch is not recorded and no checkpoint is written from it
            raise TrainingError(f"loss became {mean} at epoch {epoch + 1}; lower --lr or check the input data",
                                epoch=epoch + 1, loss_curve=result.loss_curve)
        result.loss_curve.append(mean)
        result.images_seen += count
        bar.set_postfix(loss=f"{mean:.4f}")
        if checkpoint is not None and time.perf_counter() - last_save >= checkpoint_every_s:
            _save_checkpoint(checkpoint, model, opt, epoch + 1, result, generator, config, scaler)
            last_save = time.perf_counter()
        if on_epoch is not None:
            on_epoch(epoch + 1, mean)
    result.seconds = time.perf_counter() - t0
    result.feature_cache = features.info()
    return result
