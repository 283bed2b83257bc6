"""A sweep's progress on stderr: one tqdm bar over its runs (``[k/N] protocol/category backbone seed``, the
epoch of each run under way, elapsed time, an ETA from the training rates measured so far), the lines about
resumed and skipped runs, and the Ray actor through which workers report their epochs to the driver."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, TextIO

from tqdm.auto import tqdm

from rdbench.bench.reproduce import estimate_seconds, format_seconds
from rdbench.config import RunConfig
from rdbench.engine.train import TrainEvents
from rdbench.records.schema import RunRecord

BAR_FORMAT = "{desc} |{bar:12}| {n_fmt}/{total_fmt} runs, {elapsed} elapsed{postfix}"


_DEFAULT = RunConfig()


def run_name(config: RunConfig) -> str:
    """``protocol/category backbone seed N``, and what tells it from the other runs of a table where that is not
    the paper's default (image size, Table 5's bottleneck, Table 7's layers)."""
    variant = [f"{config.image_size} px" if config.image_size != _DEFAULT.image_size else "",
               config.bottleneck if config.bottleneck != _DEFAULT.bottleneck else "",
               "layers " + ",".join(map(str, config.layers)) if config.layers != _DEFAULT.layers else ""]
    variant = [v for v in variant if v]
    return (f"{config.protocol}/{config.category} {config.backbone} seed {config.seed}"
            + (f" ({', '.join(variant)})" if variant else ""))


class SweepProgress:
    """The bar of one sweep over ``configs`` (indices into them name the runs). Messages (resumed, skipped) are
    written whether or not the bar is shown. The ETA is the dry-run estimate (``estimate_seconds``) of the runs
    not finished, until a run has finished; then that estimate scaled by the measured training rate of the runs
    finished so far (the mean of their measured / estimated training seconds), less the epochs done of the runs
    under way, divided among the runs under way at once (Ray). Like the estimate, it counts training only."""

    def __init__(self, configs: Sequence[RunConfig], cuda: bool, enabled: bool = True, file: TextIO | None = None):
        self.configs = list(configs)
        self.estimates = [estimate_seconds(c, cuda) for c in self.configs]
        self.ratios: list[float] = []
        self.running: dict[int, tuple[int, int]] = {}  # index -> (epochs done, epochs)
        self.finished: set[int] = set()  # trained or skipped
        self.file = file or sys.stderr
        self.bar = tqdm(total=len(self.configs), file=self.file, disable=not enabled, bar_format=BAR_FORMAT,
                        leave=True, mininterval=0, smoothing=0)
        self._show()

    # --- what the executors tell it ---
    def start(self, i: int) -> None:
        self.running.setdefault(i, (0, self.configs[i].epochs))
        self._show()

    def epoch(self, i: int, epoch: int, total: int) -> None:
        self.running[i] = (epoch, total)
        self._show()

    def resumed(self, i: int, epoch: int) -> None:
        self.write(f"resumed {run_name(self.configs[i])} from epoch {epoch}")
        self.epoch(i, epoch, self.configs[i].epochs)

    def finish(self, i: int, record: RunRecord | None = None) -> None:
        self.running.pop(i, None)
        if i in self.finished:
            return
        self.finished.add(i)
        ratio = self._ratio(i, record)
        if ratio is not None:
            self.ratios.append(ratio)
        self.bar.update(1)
        self._show()

    def skip(self, i: int, why: str) -> None:
        self.write(f"skipping {run_name(self.configs[i])}: {why}")
        self.finish(i)

    def events(self, i: int) -> TrainEvents:
        """The events of run ``i`` as the engine reports them (local executor)."""
        return _RunEvents(self, i)

    def apply(self, events: Sequence[tuple]) -> None:
        """Events reported by Ray workers through their ``Inbox``: (index, kind, *values)."""
        for i, kind, *values in events:
            if i in self.finished:
                continue
            if kind == "start":
                self.start(i)
            elif kind == "resumed":
                self.resumed(i, *values)
            elif kind == "epoch":
                self.epoch(i, *values)

    # --- what it shows ---
    def _ratio(self, i: int, record: RunRecord | None) -> float | None:
        """Measured / estimated training seconds of a finished run, over the epochs it trained in this process
        (a resumed run trained fewer). Seconds rather than seconds per image: the estimate counts the images of
        the paper's datasets, and a subset or another dataset would throw a per-image rate off by its size."""
        timings = (record.timings or {}) if record is not None and record.ok else {}
        config, seconds = self.configs[i], timings.get("train_s")
        epochs = config.epochs - (timings.get("resumed_from_epoch") or 0)
        estimate = self.estimates[i] * epochs / config.epochs
        if not seconds or estimate <= 0:
            return None
        return seconds / estimate

    def eta(self) -> tuple[float, bool]:
        """(seconds left, whether measured rates went into it)."""
        factor = sum(self.ratios) / len(self.ratios) if self.ratios else 1.0
        left = 0.0
        for i, est in enumerate(self.estimates):
            if i not in self.finished:
                done, total = self.running.get(i, (0, 1))
                left += factor * est * (1 - done / max(total, 1))
        return left / max(1, len(self.running)), bool(self.ratios)

    def _show(self) -> None:
        n = len(self.configs)
        if self.running:
            runs = "; ".join(run_name(self.configs[i]) + (f" epoch {e}/{t}" if e else "")
                             for i, (e, t) in sorted(self.running.items()))
            desc = f"[{min(len(self.finished) + 1, n)}/{n}] {runs}"
        else:
            desc = f"[{len(self.finished)}/{n}]" + (" done" if len(self.finished) == n else "")
        seconds, measured = self.eta()
        self.bar.set_description_str(desc, refresh=False)
        self.bar.set_postfix_str(f"ETA {format_seconds(seconds)}" + ("" if measured else " (estimated)"),
                                 refresh=True)

    def write(self, message: str) -> None:
        tqdm.write(message, file=self.file)  # above the bar, which is drawn again below it

    def close(self) -> None:
        self.bar.close()


class _RunEvents(TrainEvents):
    def __init__(self, progress: SweepProgress, i: int):
        self.progress, self.i = progress, i

    def resumed(self, epoch: int) -> None:
        self.progress.resumed(self.i, epoch)

    def epoch(self, epoch: int, total: int) -> None:
        self.progress.epoch(self.i, epoch, total)


# --- Ray ------------------------------------------------------------------------------------------------------

def make_inbox(ray: Any) -> Any:
    """A Ray actor collecting the workers' events until the driver takes them; None when none can be made
    (progress is then per finished task only). It needs no CPU: it must never hold back a run."""
    @ray.remote(num_cpus=0)
    class Inbox:
        def __init__(self):
            self.events: list[tuple] = []

        def put(self, *event) -> None:
            self.events.append(event)

        def take(self) -> list[tuple]:
            events, self.events = self.events, []
            return events

    try:
        return Inbox.remote()
    except Exception:  # a cluster refusing actors must not stop the sweep
        return None


def take_events(ray: Any, inbox: Any, timeout_s: float = 10.0) -> list[tuple]:
    if inbox is None:
        return []
    try:
        return ray.get(inbox.take.remote(), timeout=timeout_s)
    except Exception:  # the inbox died (its node was lost): progress is per finished task from now on
        return []


class InboxEvents(TrainEvents):
    """A Ray worker's side: each event sent to the driver's ``Inbox`` (fire and forget: a lost inbox costs the
    progress display, never the run)."""

    def __init__(self, inbox: Any, i: int):
        self.inbox, self.i = inbox, i

    def _put(self, *event) -> Any:
        if self.inbox is None:
            return None
        with suppress(Exception):
            return self.inbox.put.remote(self.i, *event)
        return None

    def started(self) -> None:
        self._put("start")

    def resumed(self, epoch: int) -> None:
        self._put("resumed", epoch)

    def epoch(self, epoch: int, total: int) -> None:
        self._put("epoch", epoch, total)

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until the inbox has this task's events: an actor runs one caller's calls in order, so once
        this last one is done the driver sees every event of the task before the task's result."""
        ref = self._put("end")
        if ref is not None:
            import ray

            with suppress(Exception):
                ray.get(ref, timeout=timeout_s)
