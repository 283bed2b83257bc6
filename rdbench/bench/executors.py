"""Run many configs: skip the finished ones (``pending``), then run the rest on an executor (``run_configs``).

Every executor hands each finished record back to the driver, which writes it with ``store_record`` at once,
so a sweep killed midway keeps what finished, and workers never need the results folder (Ray: no shared
filesystem). Executors: ``local`` (in this process, one run after another) and ``ray`` (one task per run, on a
cluster or, with no address, on this machine: Ray sees its GPUs and hands each task one, so several GPUs of one
machine are used through Ray rather than through a scheduler of our own). ``local`` on a machine with more than
one GPU switches to Ray on this machine when Ray is installed.

The driver claims each run in the results folder before it trains it (``rdbench.bench.driver.Sweep``), so sweeps
sharing a folder never train a run twice, and shows one progress bar over the sweep. A run interrupted midway
resumes from its checkpoint: always with ``local``; with ``ray`` when the workers share ``checkpoint_dir``.
"""

from __future__ import annotations

import io
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import torch

from rdbench.bench.driver import Sweep, SweepSettings
from rdbench.bench.progress import InboxEvents, make_inbox, take_events
from rdbench.bench.reuse import plan_reuse
from rdbench.config import RunConfig
from rdbench.engine.run import discard_checkpoint, execute_run
from rdbench.metrics import ScoreSummary
from rdbench.records.schema import RunRecord
from rdbench.records.store import check_writable
from rdbench.registry import Registry, load_plugins

RAY_POLL_S = 1.0  # how often the driver collects the workers' epoch reports while it waits for results


class Executor(Protocol):
    """Runs each config it may claim (``sweep.claim(i)``) and hands its record to ``sweep.store(i, record)``."""

    def __call__(self, configs: list[RunConfig], results_dir: Path, sweep: Sweep, *, address: str | None,
                 progress: bool, threads: int | None) -> None: ...


EXECUTORS: Registry[Executor] = Registry("executor")
GPU_DEVICES = ("auto", "cuda")  # configs that may be placed on any GPU; "cpu" and "cuda:N" are kept as given


def pending(configs: Sequence[RunConfig], results_dir: Path | str, rerun: Sequence[str] = ()) -> list[RunConfig]:
    """The configs to run: those without a reusable ok record (same config hash and data fingerprint; see
    ``rdbench.bench.reuse``), duplicates dropped, order kept. Unreadable records are redone (and said)."""
    reuse = plan_reuse(configs, results_dir, rerun)
    for path in reuse.corrupt:
        print(f"warning: unreadable record {path}; the run will be redone", file=sys.stderr)
    return reuse.todo


def run_configs(configs: Sequence[RunConfig], results_dir: Path | str, executor: str = "local",
                address: str | None = None, progress: bool = True,
                on_record: Callable[[RunRecord], None] | None = None, threads: int | None = None,
                settings: SweepSettings | None = None,
                on_skip: Callable[[RunConfig, str], None] | None = None) -> list[RunRecord]:
    """Run ``configs`` (filter them with ``pending`` first) and return the records of those this process ran,
    in input order. A run claimed by another live process (another sweep on this results folder) is skipped
    and passed to ``on_skip`` with the reason; it has no record here.

    Each record is written with ``store_record`` as soon as it arrives, then passed to ``on_record``.
    ``progress`` shows the sweep's bar on stderr and per-epoch bars of in-process runs (local executor).
    ``address`` is the Ray cluster ("auto" or "HOST:PORT"; None starts a local one). ``threads`` sets the
    torch CPU threads per run (local: for the sweep's duration; ray: CPUs per task, default 1); on CPU the
    numbers depend on it, so compare sweeps at equal thread counts. ``settings``: models kept, checkpoints,
    claims (``rdbench.bench.driver.SweepSettings``)."""
    run = EXECUTORS.get(executor)  # unknown name -> ValueError listing the valid ones, before any work
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    configs = list(configs)
    results_dir = Path(results_dir)
    check_writable(results_dir / "runs")  # fail before any work when nothing could be recorded
    if not configs:
        return []
    sweep = Sweep(configs, results_dir, settings or SweepSettings(), on_record, on_skip, progress=progress)
    try:
        run(configs, results_dir, sweep, address=address, progress=progress, threads=threads)
    finally:  # interrupted too: release the claims still held, so the next sweep need not wait for them
        sweep.close()
    missing = [i for i, r in enumerate(sweep.records) if r is None and i not in sweep.skipped]
    if missing:  # an executor bug, not a failed run: say so rather than return holes
        raise RuntimeError(f"executor {executor!r} returned no record for configs {missing}")
    return [r for r in sweep.records if r is not None]


def failed_record(config: RunConfig, error: str, detail: str | None = None) -> RunRecord:
    """The record of a run whose worker died: no environment, since the driver can't know the worker's."""
    rec = RunRecord.new(config)
    rec.fail(error, detail)
    return rec


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Set torch's CPU thread count for a block and restore it after (None: leave it alone)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- local ---------------------------------------------------------------------------------------------------

@EXECUTORS.register("local")
def local_executor(configs: list[RunConfig], results_dir: Path, sweep: Sweep, *, address: str | None,
                   progress: bool, threads: int | None) -> None:
    """Sequential in this process. With more than one visible GPU and runs that may take any of them, Ray on
    this machine instead (``ray.init()`` sees the GPUs and gives each task one) when Ray is installed."""
    if address is not None:  # silently running a cluster sweep on this machine would be a surprise
        raise ValueError(f"address={address!r} is only used by the ray executor")
    n_gpus = torch.cuda.device_count()
    if n_gpus > 1 and len(configs) > 1 and any(c.device in GPU_DEVICES for c in configs):
        try:
            _import_ray()
        except ImportError:
            warnings.warn(f"{n_gpus} GPUs visible but Ray is not installed: the runs go one after another on one "
                          f"GPU; pip install 'ray[default]' to use all of them", stacklevel=2)
        else:
            ray_executor(configs, results_dir, sweep, address=None, progress=progress, threads=threads)
            return
    s = sweep.settings
    with torch_threads(threads):
        for i, config in enumerate(configs):
            if not sweep.claim(i):
                continue
            sweep.progress.start(i)
            # resume=True: a checkpoint there was left by this very config (its hash names the file), by a sweep
            # that was killed; training continues from it to the same result as an uninterrupted run
            record = execute_run(config, results_dir, progress=progress, resume=True, keep_model=s.keep_models,
                                 checkpoint_every_s=s.checkpoint_every_s, events=sweep.events(i))
            sweep.store(i, record)
            if record.ok:  # only now: a crash before the record was stored resumes from the checkpoint
                discard_checkpoint(results_dir, config)


# --- ray ---------------------------------------------------------------------------------------------------

def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the ray executor needs Ray: pip install 'ray[default]'") from exc
    return ray


def run_in_task(config_dict: dict, threads: int | None, options: dict | None = None) -> dict:
    """Body of one Ray task. ``options``: ``checkpoint_dir`` (a folder every worker sees: resume checkpoints and
    kept models go there, and a task interrupted or retried resumes from its checkpoint), ``keep_model``,
    ``checkpoint_every_s``, and ``inbox``/``index`` for progress reports to the driver. Without a checkpoint_dir
    the workdir is a local temp folder (workers share no filesystem with the driver): no resume checkpoints, no
    kept model, and an interrupted task starts over. What comes back: the record and its scores summary, as the
    bytes of the sidecar the driver writes beside it (without them a Ray run would have no intervals, and
    ``compare`` nothing to pair)."""
    o = options or {}
    if threads is not None:
        torch.set_num_threads(threads)
    load_plugins()  # a fresh worker process: the protocols register here as they did on the driver
    events = InboxEvents(o.get("inbox"), o.get("index", 0))
    events.started()
    shared = o.get("checkpoint_dir")
    with tempfile.TemporaryDirectory(prefix="rdbench-") as tmp:
        # progress off: tqdm bars of many workers interleave into noise on the driver (the inbox reports instead)
        record = execute_run(RunConfig.from_dict(config_dict), shared or tmp, progress=False, resume=bool(shared),
                             keep_model=bool(shared) and o.get("keep_model", True),
                             checkpoint_every_s=o.get("checkpoint_every_s") if shared else float("inf"),
                             events=events)
    events.flush()
    scores = None
    if record.scores is not None:
        buffer = io.BytesIO()
        record.scores.to_npz(buffer)
        scores = buffer.getvalue()
    # plain JSON types and bytes on the wire: driver and workers may run different rdbench
    return {"record": record.to_dict(), "scores_npz": scores}


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a scheduler ending the driver, ``kill``) raised as KeyboardInterrupt for the block, so the driver
    stores what has finished before it goes, as on Ctrl-C. Only in the main thread, where Python handles signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    before = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def discard_in_task(checkpoint_dir: str, config_dict: dict) -> None:
    """A small Ray task: remove a stored run's resume checkpoint from the shared ``checkpoint_dir``, which every
    worker sees and the driver may not."""
    discard_checkpoint(checkpoint_dir, RunConfig.from_dict(config_dict))


def record_of_task(result: Any, where: str) -> RunRecord:
    """The record a Ray task returned, with its scores summary; a plain record dict is what a worker of an older
    rdbench returns (no scores: its record gets no sidecar)."""
    if isinstance(result, dict) and "record" in result and "config" not in result:
        record = RunRecord.from_dict(result["record"], where=where)
        if result.get("scores_npz"):
            record.scores = ScoreSummary.from_npz(io.BytesIO(result["scores_npz"]))
        return record
    return RunRecord.from_dict(result, where=where)


def _task_error(exc: Exception) -> tuple[str, str]:
    """(one-line error, full text without terminal colours) of a task that produced no record."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the task's own exception
    if isinstance(cause, BaseException):
        return f"RayTaskError: {type(cause).__name__}: {cause}", text
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}", text


@EXECUTORS.register("ray")
def ray_executor(configs: list[RunConfig], results_dir: Path, sweep: Sweep, *, address: str | None,
                 progress: bool, threads: int | None) -> None:
    """One Ray task per run; records are written on the driver as tasks finish. Workers must be able to
    import rdbench (installed there, or a runtime_env given to your own ray.init before this call). The driver
    claims each run when it submits its task (it holds the claims for the cluster), and shows the workers'
    epochs, reported through a small actor (``rdbench.bench.progress.make_inbox``), on its bar."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    # GPUs of the cluster, not of the driver: a CPU-only head node still gets GPU tasks, and a GPU on the
    # driver that the cluster doesn't offer would leave num_gpus=1 tasks unschedulable forever
    cluster_gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(run_in_task)  # looked up per call, so a test can substitute the task body
    discard = ray.remote(num_cpus=0)(discard_in_task)
    s = sweep.settings
    inbox = make_inbox(ray)
    shared = {"checkpoint_dir": s.checkpoint_dir, "keep_model": s.keep_models,
              "checkpoint_every_s": s.checkpoint_every_s, "inbox": inbox}
    refs: dict[Any, int] = {}
    for i, config in enumerate(configs):
        if not sweep.claim(i):
            continue
        if cluster_gpus and config.device != "cpu":
            # Ray makes the task's GPU the only visible one, so it is "cuda" (a cuda:N may not exist there)
            opts, config, n = {"num_gpus": 1}, config.replace(device="cuda"), threads
        else:
            n = threads or 1  # one CPU per task, and torch told so: the default would oversubscribe the node
            opts = {"num_cpus": n}
            if config.device == "auto":  # a num_gpus=0 task may still see the node's GPUs; it wasn't given one
                config = config.replace(device="cpu")
        # max_retries=1: a worker that died (node lost, OOM-killed) is retried once, resuming from its checkpoint
        # with a checkpoint_dir. retry_exceptions=False (Ray's default, said here on purpose): an exception
        # escaping the task is not retried, since a run's own failures already come back as failed records
        # and what escapes is deterministic; retrying would only repeat it
        ref = task.options(max_retries=1, retry_exceptions=False, **opts).remote(config.to_dict(), n,
                                                                                 {**shared, "index": i})
        refs[ref] = i
    remaining, cleanups, stored = list(refs), [], set()

    def collect(ref: Any) -> None:
        stored.add(ref)
        i = refs[ref]
        try:
            record = record_of_task(ray.get(ref), f"the record of Ray task {i}")
        except Exception as exc:  # worker crash, task error, (de)serialisation: the sweep goes on
            record = failed_record(configs[i], *_task_error(exc))
        sweep.store(i, record)
        if record.ok and s.checkpoint_dir:  # its checkpoint goes once the record is stored, not before
            with suppress(Exception):  # a lost cleanup costs disk, never a run
                cleanups.append(discard.remote(s.checkpoint_dir, configs[i].to_dict()))

    try:
        with _sigterm_as_interrupt():
            while remaining:
                ready, remaining = ray.wait(remaining, num_returns=1, timeout=RAY_POLL_S)
                # before the results: a task's events are all in the inbox before its result is ready
                sweep.progress.apply(take_events(ray, inbox))
                for ref in ready:
                    collect(ref)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: what has finished is stored before the rest is cancelled
        left = [r for r in refs if r not in stored]  # the ones a wait had returned but the loop not stored, too
        done, remaining = ray.wait(left, num_returns=len(left), timeout=0) if left else ([], [])
        for ref in done:
            collect(ref)
        print(f"interrupted: stored {len(done)} run(s) that had finished, cancelling {len(remaining)} still "
              "running (a sweep started again resumes them from --checkpoint-dir, if given)", file=sys.stderr)
        raise
    finally:
        for ref in remaining:  # interrupted or store failed: don't leave the cluster running orphans
            with suppress(Exception):
                ray.cancel(ref, force=True)
        if cleanups:
            with suppress(Exception):
                ray.wait(cleanups, num_returns=len(cleanups), timeout=10)
        if inbox is not None:
            with suppress(Exception):
                ray.kill(inbox)
