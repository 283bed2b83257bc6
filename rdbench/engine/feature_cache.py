"""Teacher-feature cache for training: the teacher is frozen and the training images are not augmented,
so its features of a training image are the same at every epoch. The cache keeps them after the first
time they are computed and serves them afterwards, leaving only the student (OCBE + decoder) to run.

Design (what the tests check):

* Filled lazily, from the batches the training loop computes anyway in its first epoch: the first epoch
  costs what an uncached epoch costs (plus one copy), the later ones skip the teacher and the image
  stacking entirely. A resumed run fills a fresh cache in its first epoch.
* All or nothing, decided at the first batch from the features' size: if ``n_images x bytes per image``
  exceeds the budget, nothing is cached and every batch recomputes the teacher (the reason is kept in
  ``info()``). Partial caching would mix cached and recomputed images in one batch; it is not done.
* Bit-identical to the uncached loop on CPU (same shuffling, same batches, same results). oneDNN's
  convolutions give the same bits for an image whatever the other images of a batch, for batches of two
  images or more, but pick other kernels for a batch of one image (measured: torch 2.x on the CI CPU; last-bit
  differences at small image sizes). So batches of one image are never served from nor written to the
  cache, and the first batch served from the cache is checked once against a fresh teacher pass; on a
  mismatch the cache is dropped and the loop recomputes (``exact=True``, the default on CPU). On CUDA
  the check is off by default: cuDNN may choose algorithms by batch composition, so cached features may
  differ from recomputed ones in the last bits (float tolerance, not bits).
* Budget: ``default_budget(device)``: on CPU min(4 GiB, half the memory the OS reports available); on
  CUDA a quarter of the device memory free when training starts (the activations of the student need
  the rest). A budget of 0 disables the cache.

Memory per image at 256 px (float32, teacher layers 1-3): resnet18/34 1.75 MiB (64x64x64 + 128x32x32 +
256x16x16 floats), resnet50 and wide_resnet50_2 7 MiB (256x64x64 + 512x32x32 + 1024x16x16); the largest
MVTec AD training set (hazelnut, 391 images) thus needs 2.7 GiB with wide_resnet50_2.
"""

from __future__ import annotations

from collections.abc import Callable

import psutil
import torch
from torch import nn

CPU_BUDGET_BYTES = 4 * 1024**3
CUDA_FREE_FRACTION = 0.25
CPU_AVAILABLE_FRACTION = 0.5


def _available_cpu_bytes() -> int | None:
    try:
        return int(psutil.virtual_memory().available)
    except (OSError, psutil.Error, NotImplementedError):  # no figure on this OS or in this sandbox
        return None


def default_budget(device: torch.device) -> int:
    """Bytes the cache may use on ``device`` (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * CUDA_FREE_FRACTION)
    available = _available_cpu_bytes()
    if available is None:
        return CPU_BUDGET_BYTES
    return int(min(CPU_BUDGET_BYTES, available * CPU_AVAILABLE_FRACTION))


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class TeacherFeatureCache:
    """Features of the frozen ``teacher`` for training images 0..n-1, kept on ``device``.

    ``features(idx, images)`` returns the teacher's [layer1, layer2, layer3] features of the images ``idx``
    (a 1-D index tensor, in that order); ``images`` is a callable returning the batch of those images
    (on the teacher's device), called only when the teacher has to run.
    """

    def __init__(self, teacher: nn.Module, n_images: int, device: torch.device | str,
                 budget_bytes: int | None = None, exact: bool | None = None):
        self.teacher = teacher
        self.n = int(n_images)
        self.device = torch.device(device)
        self.budget = default_budget(self.device) if budget_bytes is None else int(budget_bytes)
        self.exact = (self.device.type == "cpu") if exact is None else bool(exact)
        self.store: list[torch.Tensor] | None = None
        self.formats: list[torch.memory_format] = []
        self.filled = torch.zeros(self.n, dtype=torch.bool)
        self.bytes = 0
        self.verified = not self.exact
        self.hits = 0  # images served from the cache
        self.computed = 0  # images whose features the teacher computed
        self.reason: str | None = "budget is 0 (cache off)" if self.budget <= 0 else None

    @property
    def active(self) -> bool:
        return self.reason is None

    @property
    def complete(self) -> bool:
        return self.active and self.store is not None and bool(self.filled.all())

    def info(self) -> dict:
        """What the cache did, for records and the profile."""
        return {"active": self.active, "reason": self.reason, "bytes": self.bytes, "budget_bytes": self.budget,
                "device": str(self.device), "images": self.n, "filled": int(self.filled.sum()),
                "hits": self.hits, "computed": self.computed, "exact_check": self.exact}

    def _drop(self, reason: str) -> None:
        self.reason, self.store, self.bytes = reason, None, 0
        self.filled.zero_()

    def _allocate(self, feats: list[torch.Tensor]) -> bool:
        per_image = sum(f[0].numel() * f.element_size() for f in feats)
        need = per_image * self.n
        if need > self.budget:
            self.reason = (f"teacher features need {need / 2**20:.0f} MiB ({per_image / 2**20:.2f} MiB x {self.n} "
                           f"images) > budget {self.budget / 2**20:.0f} MiB: recomputing the teacher every step")
            return False
        self.formats = [_memory_format(f) for f in feats]
        try:
            self.store = [torch.empty((self.n, *f.shape[1:]), dtype=f.dtype, device=self.device, memory_format=fmt)
                          for f, fmt in zip(feats, self.formats)]
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:  # the budget is a guess; memory may be short
            self._drop(f"could not allocate {need / 2**20:.0f} MiB for the cache ({type(exc).__name__})")
            return False
        self.bytes = need
        return True

    def _compute(self, images: Callable[[], torch.Tensor]) -> list[torch.Tensor]:
        with torch.no_grad():
            feats = self.teacher(images())
        return feats

    def features(self, idx: torch.Tensor, images: Callable[[], torch.Tensor]) -> list[torch.Tensor]:
        idx = idx.reshape(-1).to(torch.long)
        one = idx.numel() < 2  # see the module docstring: batches of one image bypass the cache
        if self.active and not one and self.store is not None and bool(self.filled[idx].all()):
            where = idx.to(self.device, non_blocking=True)
            feats = [s.index_select(0, where).contiguous(memory_format=fmt)
                     for s, fmt in zip(self.store, self.formats)]
            if not self.verified:
                fresh = self._compute(images)
                self.computed += idx.numel()
                if not all(torch.equal(a, b) for a, b in zip(feats, fresh)):
                    self._drop("cached teacher features differ from recomputed ones in the last bits on this "
                               "device; recomputing every step to stay bit-identical")
                    return fresh
                self.verified = True
            self.hits += idx.numel()
            return feats
        feats = self._compute(images)
        self.computed += idx.numel()
        if self.active and not one and (self.store is not None or self._allocate(feats)):
            where = idx.to(self.device, non_blocking=True)
            for s, f in zip(self.store, feats):
                s.index_copy_(0, where, f.detach())
            self.filled[idx] = True
        return feats


__all__ = ["CPU_BUDGET_BYTES", "CUDA_FREE_FRACTION", "TeacherFeatureCache", "default_budget"]
