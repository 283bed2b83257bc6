"""Run many configs: skip the finished ones (``pending``), then run the rest on an executor (``run_configs``).

Every executor hands each finished record back to the driver, which writes it with ``store_record`` at once,
so a sweep killed midway keeps what finished, and workers never need the results folder (Ray: no shared
filesystem). Executors: ``local`` (in this process, one run after another) and ``ray`` (one task per run, on a
cluster or, with no address, on this machine: Ray sees its GPUs and hands each task one, so several GPUs of one
machine are used through Ray rather than through a scheduler of our own). ``local`` on a machine with more than
one GPU switches to Ray on this machine when Ray is installed.
"""

from __future__ import annotations

import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

import torch

from rdbench.config import RunConfig
from rdbench.engine.run import execute_run
from rdbench.records.schema import RunRecord
from rdbench.records.store import check_writable, read_record, record_path, store_record
from rdbench.registry import Registry, load_plugins

Store = Callable[[int, RunRecord], None]  # (index into the configs, record) -> written on the driver


class Executor(Protocol):
    def __call__(self, configs: list[RunConfig], results_dir: Path, store: Store, *, address: str | None,
                 progress: bool, threads: int | None) -> None: ...


EXECUTORS: Registry[Executor] = Registry("executor")
GPU_DEVICES = ("auto", "cuda")  # configs that may be placed on any GPU; "cpu" and "cuda:N" are kept as given


def pending(configs: Sequence[RunConfig], results_dir: Path | str) -> list[RunConfig]:
    """The configs without an ok record of the same hash, duplicates (same hash) dropped, order kept.
    A failed, corrupt or unreadable record counts as missing: that run is done again."""
    out, seen = [], set()
    for config in configs:
        h = config.hash()
        if h in seen:
            continue
        seen.add(h)
        path = record_path(Path(results_dir), config)
        if not path.exists():
            out.append(config)
            continue
        try:
            rec = read_record(path)
        except (OSError, ValueError) as exc:  # JSONDecodeError is a ValueError
            print(f"warning: unreadable record {path} ({exc}); the run will be redone", file=sys.stderr)
            out.append(config)
            continue
        if not rec.ok or rec.config_hash != h:
            out.append(config)
    return out


def run_configs(configs: Sequence[RunConfig], results_dir: Path | str, executor: str = "local",
                address: str | None = None, progress: bool = True,
                on_record: Callable[[RunRecord], None] | None = None, threads: int | None = None) -> list[RunRecord]:
    """Run ``configs`` (filter them with ``pending`` first) and return their records in input order.

    Each record is written with ``store_record`` as soon as it arrives, then passed to ``on_record``.
    ``progress`` shows per-epoch bars of in-process runs (local executor).
    ``address`` is the Ray cluster ("auto" or "HOST:PORT"; None starts a local one). ``threads`` sets the
    torch CPU threads per run (local: for the sweep's duration; ray: CPUs per task, default 1); on CPU the
    numbers depend on it, so compare sweeps at equal thread counts."""
    run = EXECUTORS.get(executor)  # unknown name -> ValueError listing the valid ones, before any work
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    configs = list(configs)
    results_dir = Path(results_dir)
    check_writable(results_dir / "runs")  # fail before any work when nothing could be recorded
    records: list[RunRecord | None] = [None] * len(configs)

    def store(i: int, record: RunRecord) -> None:
        records[i] = store_record(record, results_dir)
        if on_record is not None:  # the caller's progress report (Ray tasks show no progress bars)
            on_record(records[i])

    if configs:
        run(configs, results_dir, store, address=address, progress=progress, threads=threads)
    missing = [i for i, r in enumerate(records) if r is None]
    if missing:  # an executor bug, not a failed run: say so rather than return holes
        raise RuntimeError(f"executor {executor!r} returned no record for configs {missing}")
    return records  # type: ignore[return-value]


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
def local_executor(configs: list[RunConfig], results_dir: Path, store: Store, *, address: str | None,
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
            ray_executor(configs, results_dir, store, address=None, progress=progress, threads=threads)
            return
    with torch_threads(threads):
        for i, config in enumerate(configs):
            store(i, execute_run(config, results_dir, progress=progress))


# --- ray ---------------------------------------------------------------------------------------------------

def _import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise ImportError("the ray executor needs Ray: pip install 'ray[default]'") from exc
    return ray


def run_in_task(config_dict: dict, threads: int | None) -> dict:
    """Body of one Ray task. The workdir is a local temp folder (workers share no filesystem with the
    driver): no resume checkpoints, no kept model; only the record comes back."""
    if threads is not None:
        torch.set_num_threads(threads)
    load_plugins()  # a fresh worker process: the protocols register here as they did on the driver
    with tempfile.TemporaryDirectory(prefix="rdbench-") as workdir:
        # progress off: tqdm bars of many workers interleave into noise on the driver
        record = execute_run(RunConfig.from_dict(config_dict), workdir, progress=False, keep_model=False,
                             checkpoint_every_s=float("inf"))
    return record.to_dict()  # plain JSON types on the wire: driver and workers may run different rdbench


def _task_error(exc: Exception) -> tuple[str, str]:
    """(one-line error, full text without terminal colours) of a task that produced no record."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    cause = getattr(exc, "cause", None)  # RayTaskError wraps the task's own exception
    if isinstance(cause, BaseException):
        return f"RayTaskError: {type(cause).__name__}: {cause}", text
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}", text


@EXECUTORS.register("ray")
def ray_executor(configs: list[RunConfig], results_dir: Path, store: Store, *, address: str | None,
                 progress: bool, threads: int | None) -> None:
    """One Ray task per run; records are written on the driver as tasks finish. Workers must be able to
    import rdbench (installed there, or a runtime_env given to your own ray.init before this call)."""
    ray = _import_ray()
    if not ray.is_initialized():
        ray.init(address=address)
    # GPUs of the cluster, not of the driver: a CPU-only head node still gets GPU tasks, and a GPU on the
    # driver that the cluster doesn't offer would leave num_gpus=1 tasks unschedulable forever
    cluster_gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(run_in_task)  # looked up per call, so a test can substitute the task body
    refs: dict[Any, int] = {}
    for i, config in enumerate(configs):
        if cluster_gpus and config.device != "cpu":
            # Ray makes the task's GPU the only visible one, so it is "cuda" (a cuda:N may not exist there)
            opts, config, n = {"num_gpus": 1}, config.replace(device="cuda"), threads
        else:
            n = threads or 1  # one CPU per task, and torch told so: the default would oversubscribe the node
            opts = {"num_cpus": n}
            if config.device == "auto":  # a num_gpus=0 task may still see the node's GPUs; it wasn't given one
                config = config.replace(device="cpu")
        # one retry covers a lost node without repeating a deterministic crash many times
        refs[task.options(max_retries=1, **opts).remote(config.to_dict(), n)] = i
    remaining = list(refs)
    try:
        while remaining:
            ready, remaining = ray.wait(remaining, num_returns=1)
            for ref in ready:
                i = refs[ref]
                try:
                    record = RunRecord.from_dict(ray.get(ref), where=f"the record of Ray task {i}")
                except Exception as exc:  # worker crash, task error, (de)serialisation: the sweep goes on
                    record = failed_record(configs[i], *_task_error(exc))
                store(i, record)
    finally:
        for ref in remaining:  # interrupted or store failed: don't leave the cluster running orphans
            with suppress(Exception):
                ray.cancel(ref, force=True)
