"""Executors: pending(), the local executor (in-process; Ray on this machine for several GPUs) and a real local
Ray cluster."""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest
import torch

import rdbench.bench.executors as ex
from rdbench.config import RunConfig
from rdbench.records.schema import RunRecord
from rdbench.records.store import record_path, write_record


def _config(root, **kw) -> RunConfig:
    base = dict(protocol="mvtec", data_root=str(root), category="carpet", backbone="resnet18", weights="none",
                epochs=1, batch_size=2, image_size=64, seed=7, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def _write(results: Path, config: RunConfig, status: str) -> Path:
    record = RunRecord.new(config)
    record.status = status
    return write_record(record, record_path(results, config))


def _same_numbers(a: RunRecord, b: RunRecord) -> None:
    assert a.status == b.status == "ok", (a.error, b.error)
    assert a.config_hash == b.config_hash
    assert a.metrics == b.metrics
    assert a.per_image == b.per_image
    assert a.loss_curve == b.loss_curve


# --- pending ------------------------------------------------------------------------------------------------

def test_pending_skips_ok_keeps_failed_redoes_corrupt_dedupes(tmp_path, capsys):
    ok, failed, corrupt, missing = (_config("/data", seed=s) for s in (1, 2, 3, 4))
    _write(tmp_path, ok, "ok")
    _write(tmp_path, failed, "failed")
    record_path(tmp_path, corrupt).write_text('{"config": {"category": "carp')  # a write cut short
    same_run_other_device = missing.replace(device="cuda")  # device is not part of the hash
    configs = [missing, ok, failed, corrupt, same_run_other_device, failed]
    assert ex.pending(configs, tmp_path) == [missing, corrupt]  # a failure is not retried unless asked
    assert record_path(tmp_path, corrupt).name in capsys.readouterr().err
    assert ex.pending(configs, tmp_path, rerun=["failed"]) == [missing, failed, corrupt]


def test_pending_without_results_folder_is_everything(tmp_path):
    configs = [_config("/data", seed=s) for s in (1, 2)]
    assert ex.pending(configs, tmp_path / "nothing-yet") == configs


# --- local --------------------------------------------------------------------------------------------------

def test_local_writes_ok_and_failed_records(tiny_mvtec, tmp_path):
    configs = [_config(tiny_mvtec), _config(tiny_mvtec, category="zipper")]
    seen = []
    threads_before = torch.get_num_threads()
    recs = ex.run_configs(configs, tmp_path, progress=False, on_record=seen.append, threads=1)
    assert torch.get_num_threads() == threads_before  # restored after the sweep
    assert [r.status for r in recs] == ["ok", "failed"]
    assert "zipper" in recs[1].error
    assert [r.config_hash for r in seen] == [c.hash() for c in configs]
    for config, rec in zip(configs, recs):
        on_disk = json.loads(record_path(tmp_path, config).read_text())
        assert on_disk["status"] == rec.status and on_disk["record_path"] == rec.record_path
    assert ex.pending(configs, tmp_path) == [] and ex.pending(configs, tmp_path, rerun=["failed"]) == [configs[1]]


def test_unknown_executor_and_misplaced_address(tmp_path):
    with pytest.raises(ValueError, match="local, ray"):
        ex.run_configs([_config("/data")], tmp_path, executor="slurm")
    with pytest.raises(ValueError, match="only used by the ray executor"):
        ex.run_configs([_config("/data")], tmp_path, address="auto")
    assert ex.run_configs([], tmp_path, executor="ray") == []  # nothing to do: no cluster started


def test_local_with_several_gpus_runs_on_ray_on_this_machine(tiny_mvtec, tmp_path, monkeypatch):
    """Pretend two GPUs: the local executor hands the sweep to Ray on this machine (no address: ray.init() there
    sees the GPUs and gives each task one) instead of a scheduler of its own."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    calls = []

    def fake_ray(configs, results_dir, sweep, *, address, progress, threads):
        calls.append((len(configs), address))
        for i, config in enumerate(configs):
            sweep.store(i, ex.failed_record(config, "FakeRay: not run"))

    monkeypatch.setattr(ex, "ray_executor", fake_ray)
    monkeypatch.setattr(ex, "_import_ray", lambda: object())
    configs = [_config(tiny_mvtec, device="auto"), _config(tiny_mvtec, category="bottle", device="auto")]
    recs = ex.run_configs(configs, tmp_path, progress=False)
    assert calls == [(2, None)] and [r.error for r in recs] == ["FakeRay: not run"] * 2


def test_local_with_several_gpus_and_no_ray_runs_in_turn_and_says_so(tiny_mvtec, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    configs = [_config(tiny_mvtec, category="zipper", device="cpu"), _config(tiny_mvtec, category="zipper", seed=8)]
    configs[0] = configs[0].replace(device="auto")
    with pytest.warns(UserWarning, match=r"2 GPUs visible but Ray is not installed"):
        recs = ex.run_configs(configs, tmp_path, progress=False)
    assert [r.status for r in recs] == ["failed", "failed"] and "zipper" in recs[1].error


# --- ray ----------------------------------------------------------------------------------------------------

def test_ray_is_imported_lazily_with_install_hint(tmp_path, monkeypatch):
    tree = ast.parse(Path(ex.__file__).read_text())
    top_level = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top_level |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert "ray" not in top_level  # importing rdbench.bench.executors must work without ray installed
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ImportError, match=r"pip install 'ray\[default\]'"):
        ex.run_configs([_config("/d")], tmp_path, executor="ray")


def test_ray_init_gets_the_address(tmp_path, monkeypatch):
    import types

    class Stop(Exception):
        pass

    seen = []

    def init(address=None, **kw):
        seen.append(address)
        raise Stop

    monkeypatch.setitem(sys.modules, "ray", types.SimpleNamespace(is_initialized=lambda: False, init=init))
    with pytest.raises(Stop):
        ex.run_configs([_config("/d")], tmp_path, executor="ray", address="10.0.0.1:6379")
    assert seen == ["10.0.0.1:6379"]


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'ray[default]')")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def test_ray_runs_in_parallel_and_records_failures(ray_cluster, tiny_mvtec, tmp_path, monkeypatch):
    barrier = tmp_path / "started"
    barrier.mkdir()
    real = ex.run_in_task

    def task(config_dict, threads, options=None):  # proves both tasks run at once: each waits for the other
        import time

        (barrier / config_dict["category"]).touch()
        deadline = time.time() + 60
        while len(list(barrier.iterdir())) < 2:
            if time.time() > deadline:
                raise TimeoutError("the two tasks did not run at the same time")
            time.sleep(0.05)
        return real(config_dict, threads, options)

    monkeypatch.setattr(ex, "run_in_task", task)
    configs = [_config(tiny_mvtec), _config(tiny_mvtec, category="zipper")]
    seen = []
    recs = ex.run_configs(configs, tmp_path / "res", executor="ray", progress=False, on_record=seen.append)
    assert [r.status for r in recs] == ["ok", "failed"], [r.error for r in recs]
    assert "zipper" in recs[1].error and len(seen) == 2
    for config, rec in zip(configs, recs):
        on_disk = json.loads(record_path(tmp_path / "res", config).read_text())
        assert on_disk["status"] == rec.status and on_disk["error"] == rec.error
    assert recs[0].environment["threads"] == 1 and recs[0].model_path is None
    assert not (tmp_path / "res" / "checkpoints").exists()  # the workdir was the worker's temp folder


def test_ray_task_crash_and_task_error_become_failed_records(ray_cluster, tiny_mvtec, tmp_path, monkeypatch):
    real = ex.run_in_task

    def task(config_dict, threads, options=None):
        import os

        if config_dict["category"] == "bottle":
            os._exit(3)  # the worker process dies mid-task
        if config_dict["seed"] == 8:
            raise RuntimeError("boom in the task")
        return real(config_dict, threads, options)

    monkeypatch.setattr(ex, "run_in_task", task)
    configs = [_config(tiny_mvtec, category="bottle"), _config(tiny_mvtec, seed=8), _config(tiny_mvtec)]
    recs = ex.run_configs(configs, tmp_path, executor="ray", progress=False)
    assert [r.status for r in recs] == ["failed", "failed", "ok"]
    assert recs[0].error.startswith("WorkerCrashedError: "), recs[0].error
    assert not recs[0].environment  # the driver can't know the dead worker's
    assert recs[1].error == "RayTaskError: RuntimeError: boom in the task"
    assert "\x1b" not in recs[1].traceback and "raise RuntimeError" in recs[1].traceback
    for config, rec in zip(configs, recs):
        assert json.loads(record_path(tmp_path, config).read_text())["status"] == rec.status


def test_ray_sweep_equals_local_sweep(ray_cluster, tiny_mvtec, tmp_path):
    grid = [_config(tiny_mvtec, epochs=2, device="auto"), _config(tiny_mvtec, epochs=2, category="bottle")]
    local = ex.run_configs(grid, tmp_path / "local", progress=False, threads=1)
    remote = ex.run_configs(grid, tmp_path / "ray", executor="ray", progress=False)
    for a, b in zip(local, remote):
        _same_numbers(a, b)
    # the statistics came back too: every Ray record has its scores sidecar, written by the driver, and compare
    # pairs the two sweeps image by image from them
    from rdbench.bench.compare import compare_dirs
    from rdbench.records.store import read_records, sidecar_of

    kept = read_records(tmp_path / "ray")
    assert len(kept) == 2 and all(r.scores_file and sidecar_of(r, tmp_path / "ray").is_file() for r in kept)
    rows = [r for r in compare_dirs(tmp_path / "local", tmp_path / "ray") if r.metric == "image_auroc"]
    assert len(rows) == 2 and all(r.low is not None and r.delta == 0 for r in rows)


def test_ray_retries_a_dead_worker_but_never_an_exception(ray_cluster, tiny_mvtec, tmp_path, monkeypatch):
    """max_retries=1 covers a worker that died; retry_exceptions=False: an exception escaping the task is
    deterministic (a run's own failures come back as failed records), so it is tried once."""
    attempts = tmp_path / "attempts"
    attempts.mkdir()
    real = ex.run_in_task

    def task(config_dict, threads, options=None):
        import os
        import uuid

        key = f"{config_dict['category']}-{config_dict['seed']}"
        first = not list(attempts.glob(f"{key}.*"))
        (attempts / f"{key}.{uuid.uuid4().hex}").touch()
        if config_dict["category"] == "bottle" and first:
            os._exit(3)  # the worker dies on the first attempt only
        if config_dict["seed"] == 8:
            raise RuntimeError("a bug that every attempt would meet")
        return real(config_dict, threads, options)

    monkeypatch.setattr(ex, "run_in_task", task)
    configs = [_config(tiny_mvtec, category="bottle"), _config(tiny_mvtec, seed=8)]
    recs = ex.run_configs(configs, tmp_path / "res", executor="ray", progress=False)
    assert [r.status for r in recs] == ["ok", "failed"], [r.error for r in recs]
    assert recs[1].error == "RayTaskError: RuntimeError: a bug that every attempt would meet"
    tries = sorted(p.name.split(".")[0] for p in attempts.iterdir())
    assert tries == ["bottle-7", "bottle-7", "carpet-8"]


def test_ray_task_resumes_from_the_checkpoint_dir_after_its_worker_died(ray_cluster, tiny_mvtec, tmp_path,
                                                                        monkeypatch, capsys):
    from rdbench.bench.driver import SweepSettings

    died = tmp_path / "died"
    real = ex.run_in_task

    def task(config_dict, threads, options=None):
        import os

        import rdbench.engine.train as train_mod

        if not died.exists():  # the first attempt: its worker dies once epoch 2's checkpoint is on disk
            save = train_mod._save_checkpoint

            def save_then_die(*args, **kw):
                nbytes = save(*args, **kw)
                if args[3] == 2:
                    died.touch()
                    os._exit(3)
                return nbytes

            train_mod._save_checkpoint = save_then_die
        return real(config_dict, threads, options)

    monkeypatch.setattr(ex, "run_in_task", task)
    config = _config(tiny_mvtec, epochs=4)
    (local,) = ex.run_configs([config], tmp_path / "local", progress=False, threads=1)
    shared = tmp_path / "shared"
    settings = SweepSettings(checkpoint_dir=str(shared), checkpoint_every_s=0)
    (rec,) = ex.run_configs([config], tmp_path / "res", executor="ray", progress=True, settings=settings)
    assert died.exists() and rec.ok and rec.timings["resumed_from_epoch"] == 2
    _same_numbers(local, rec)  # bit-identical to the uninterrupted local run
    err = capsys.readouterr().err
    # reported by the worker through the driver's inbox actor, shown by the driver
    assert "resumed mvtec/carpet resnet18 seed 7 (64 px) from epoch 2" in err
    assert "[1/1] mvtec/carpet resnet18 seed 7 (64 px) epoch 4/4 |" in err
    assert rec.model_path and rec.model_path.startswith(str(shared))  # kept where every worker sees it
    assert not list((shared / "checkpoints").glob("*.resume.pt"))  # removed on success


def test_a_task_result_of_an_older_worker_is_still_a_record(tiny_mvtec):
    """Workers may run another rdbench than the driver: a bare record dict (what older workers return) is read as
    before, without scores; the current payload brings the summary back bit for bit."""
    import io

    import numpy as np

    from rdbench.metrics import ScoreSummary
    from rdbench.records.schema import RunRecord

    rec = RunRecord.new(_config(tiny_mvtec))
    rec.status = "ok"
    old = ex.record_of_task(rec.to_dict(), "task 0")
    assert old.config == rec.config and old.scores is None
    summary = ScoreSummary(labels=np.array([0, 1, 1], np.int8), image_scores=np.array([0.1, 0.7, 0.4]))
    buffer = io.BytesIO()
    summary.to_npz(buffer)
    new = ex.record_of_task({"record": rec.to_dict(), "scores_npz": buffer.getvalue()}, "task 0")
    assert np.array_equal(new.scores.image_scores, summary.image_scores)
    assert np.array_equal(new.scores.labels, summary.labels)


def test_an_interrupted_ray_driver_stores_what_finished_then_cancels(ray_cluster, tiny_mvtec, tmp_path, monkeypatch,
                                                                     capsys):
    """Ctrl-C (or SIGTERM) while one task has finished and one still runs: the finished run's record is stored
    before the other is cancelled, and the driver says how many of each."""
    import time

    finished = tmp_path / "finished"
    real = ex.run_in_task

    def task(config_dict, threads, options=None):
        if config_dict["seed"] == 8:  # the run still going when the driver is interrupted
            time.sleep(120)
        out = real(config_dict, threads, options)
        finished.touch()
        return out

    real_events = ex.take_events

    def interrupt_once_finished(*args):
        while not finished.exists():
            time.sleep(0.1)
        time.sleep(1.0)  # its result is ready on the driver's side
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "run_in_task", task)
    monkeypatch.setattr(ex, "take_events", interrupt_once_finished)
    configs = [_config(tiny_mvtec), _config(tiny_mvtec, seed=8)]
    with pytest.raises(KeyboardInterrupt):
        ex.run_configs(configs, tmp_path / "res", executor="ray", progress=False)
    monkeypatch.setattr(ex, "take_events", real_events)
    assert json.loads(record_path(tmp_path / "res", configs[0]).read_text())["status"] == "ok"
    assert (tmp_path / "res" / "runs" / (record_path(tmp_path / "res", configs[0]).stem + ".scores.npz")).is_file()
    assert not record_path(tmp_path / "res", configs[1]).exists()
    assert "stored 1 run(s) that had finished, cancelling 1 still running" in capsys.readouterr().err


def test_sigterm_is_an_interrupt_inside_the_driver_loop_only():
    import os
    import signal

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), ex._sigterm_as_interrupt():
        os.kill(os.getpid(), signal.SIGTERM)
        import time

        time.sleep(5)  # the handler raises before this ends
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_resume_checkpoint_outlives_a_record_that_could_not_be_stored(tiny_mvtec, tmp_path, monkeypatch):
    """The checkpoint goes only once the record is stored: a crash in between (a full disk here) keeps the
    training, and the next attempt resumes from it."""
    from rdbench.engine import run as run_mod

    config = _config(tiny_mvtec, epochs=3)
    store = run_mod.store_record

    def full_disk(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(run_mod, "store_record", full_disk)
    with pytest.raises(OSError):
        run_mod.run_one(config, tmp_path, progress=False, keep_model=False, checkpoint_every_s=0)
    resume_ckpt, _ = run_mod.checkpoint_paths(tmp_path, config)
    assert resume_ckpt.is_file()
    monkeypatch.setattr(run_mod, "store_record", store)
    rec = run_mod.run_one(config, tmp_path, progress=False, resume=True, keep_model=False, checkpoint_every_s=0)
    assert rec.ok and rec.timings["resumed_from_epoch"] == 2
    assert not resume_ckpt.exists() and not resume_ckpt.with_suffix(".identity.json").exists()
