"""The driver's side of a sweep, whatever the executor: its settings (``SweepSettings``) and, per run, the claim
in the results folder, the record written as soon as it arrives, and the progress bar (``Sweep``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from rdbench.bench.progress import SweepProgress
from rdbench.config import RunConfig
from rdbench.records.claims import DEFAULT_TIMEOUT_S, Claims
from rdbench.records.schema import RunRecord
from rdbench.records.store import record_path, store_record


@dataclass(frozen=True)
class SweepSettings:
    keep_models: bool = True  # keep each trained model (<results>/checkpoints/*.model.pt; Ray: in checkpoint_dir)
    checkpoint_every_s: float | None = None  # None: adaptive, writing takes <= 5% of the training time
    # Ray: a folder every worker sees, for the resume checkpoints (and kept models); without it a Ray task
    # writes them to its own temporary folder, and a task interrupted starts over
    checkpoint_dir: str | None = None
    claims: bool = True  # claim each run in <results>/claims: sweeps sharing the folder never train a run twice
    claim_timeout_s: float = DEFAULT_TIMEOUT_S  # a claim whose heartbeat is older is taken over
    # Unix time the caller read the records to decide what to run (default: when run_configs starts); a record
    # written after it was made by another sweep meanwhile, and its run is not trained again
    since: float | None = None


class Sweep:
    """One sweep's runs as the driver sees them; executors call ``claim(i)`` before running configs[i] (False:
    skip it), ``progress.start(i)`` when it starts, ``events(i)`` for in-process runs, and ``store(i, record)``."""

    def __init__(self, configs: Sequence[RunConfig], results_dir: Path, settings: SweepSettings,
                 on_record: Callable[[RunRecord], None] | None = None,
                 on_skip: Callable[[RunConfig, str], None] | None = None, progress: bool = True):
        self.configs, self.results_dir, self.settings = list(configs), Path(results_dir), settings
        self.on_record, self.on_skip = on_record, on_skip
        self.since = settings.since if settings.since is not None else time.time()
        self.records: list[RunRecord | None] = [None] * len(self.configs)
        self.skipped: dict[int, str] = {}  # index -> why
        self.claims = Claims(self.results_dir, settings.claim_timeout_s) if settings.claims else None
        cuda = any(c.device.startswith("cuda") for c in self.configs) or (
            torch.cuda.is_available() and any(c.device == "auto" for c in self.configs))
        self.progress = SweepProgress(self.configs, cuda, enabled=progress)

    def _stem(self, i: int) -> str:
        return record_path(self.results_dir, self.configs[i]).stem

    def claim(self, i: int) -> bool:
        if self.claims is None:
            return True
        holder = self.claims.acquire(self._stem(i))
        if holder is not None:
            self._skip(i, f"claimed by another process ({holder.describe()})")
            return False
        # claimed, but another sweep may have finished this run after our caller looked (it writes the record,
        # then releases the claim): that record is this run's, trained once
        if self._recorded_since(i):
            self.claims.release(self._stem(i))
            self._skip(i, "recorded by another process while this sweep ran")
            return False
        return True

    def _recorded_since(self, i: int) -> bool:
        # the file's modification time, not the record's "finished" (whole seconds): a sweep started right after
        # another ended (a script, a test) must not take that one's records for ones made meanwhile
        try:
            return record_path(self.results_dir, self.configs[i]).stat().st_mtime > self.since
        except OSError:  # no record (the usual case): ours to make
            return False

    def _skip(self, i: int, why: str) -> None:
        self.skipped[i] = why
        self.progress.skip(i, why)
        if self.on_skip is not None:
            self.on_skip(self.configs[i], why)

    def events(self, i: int):
        return self.progress.events(i)

    def store(self, i: int, record: RunRecord) -> None:
        self.records[i] = store_record(record, self.results_dir)
        if self.claims is not None:  # after the record: a sweep that claims the run next finds it recorded
            self.claims.release(self._stem(i))
        self.progress.finish(i, record)
        if self.on_record is not None:
            self.on_record(self.records[i])

    def close(self) -> None:
        """Release what is still claimed (an interrupted sweep), close the bar."""
        if self.claims is not None:
            self.claims.close()
        self.progress.close()
