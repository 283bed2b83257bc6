"""Kill-and-resume, concurrent writers, and the failures a night-long sweep meets (issue 6)."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rdbench.config import RunConfig
from rdbench.engine.run import run_one
from rdbench.records.schema import RunRecord
from rdbench.records.store import read_records, write_json, write_record

SMALL = ["--backbone", "resnet18", "--weights", "none", "--batch-size", "2", "--no-progress", "--device", "cpu"]


def _cli(*args) -> list[str]:
    return [sys.executable, "-m", "rdbench", *[str(a) for a in args]]


def _wait_for(predicate, proc, timeout=120.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def _json_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_sweep_restarts_with_only_the_missing_runs(tiny_mvtec, tmp_path, sig):
    args = _cli("reproduce", "--table", "1", "--data-root", tiny_mvtec, "--limit-categories", "carpet,bottle",
                "--results", tmp_path, "--epochs", "2", *SMALL)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    runs = tmp_path / "runs"
    assert _wait_for(lambda: len(_json_files(runs)) >= 1, proc), proc.communicate()[0]
    proc.send_signal(sig)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0, out
    done = _json_files(runs)
    assert 1 <= len(done) < 4
    for p in done:  # never partial
        assert json.loads(p.read_text())["status"] == "ok"
    again = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{len(done)} already recorded, running {4 - len(done)}" in again.stdout
    assert len(_json_files(runs)) == 4


def test_killed_training_resumes_to_the_same_result(tiny_mvtec, tmp_path):
    common = ["run", "--data-root", tiny_mvtec, "--category", "carpet", "--epochs", "12", "--image-size", "64",
              "--seed", "5", *SMALL]
    ref = run_one(RunConfig(protocol="mvtec", data_root=str(tiny_mvtec), category="carpet", backbone="resnet18",
                            weights="none", epochs=12, batch_size=2, image_size=64, seed=5, device="cpu"),
                  tmp_path / "ref", progress=False)
    res = tmp_path / "res"
    proc = subprocess.Popen(_cli(*common, "--results", res, "--checkpoint-every-s", "0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ckpts = res / "checkpoints"
    assert _wait_for(lambda: any(ckpts.glob("*.resume.pt")) if ckpts.is_dir() else False, proc), \
        proc.communicate()[0]
    proc.kill()
    proc.communicate(timeout=60)
    assert not _json_files(res / "runs")  # killed before the end: no record at all
    again = subprocess.run(_cli(*common, "--results", res, "--resume"), capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    (path,) = _json_files(res / "runs")
    rec = json.loads(path.read_text())
    assert rec["timings"]["resumed_from_epoch"] >= 1
    assert rec["loss_curve"] == ref.loss_curve and rec["metrics"] == ref.metrics


def _record(worker: int, i: int, pad: str) -> RunRecord:
    rec = RunRecord.new(RunConfig(category=f"w{worker}", seed=i))
    rec.status, rec.unknown = "ok", {"worker": worker, "i": i, "pad": pad * 20000}
    return rec


def _writer(args):
    folder, worker, n = args
    for i in range(n):
        write_record(_record(worker, i, "x"), Path(folder) / "runs" / f"w{worker}_{i}.json")
        write_record(_record(worker, i, "y"), Path(folder) / "runs" / "shared.json")
    return worker


def test_concurrent_writers_lose_nothing(tmp_path):
    with mp.get_context("spawn").Pool(4) as pool:
        assert sorted(pool.map(_writer, [(str(tmp_path), w, 15) for w in range(4)])) == [0, 1, 2, 3]
    records = read_records(tmp_path)
    assert len(records) == 4 * 15 + 1
    assert {(r.unknown["worker"], r.unknown["i"]) for r in records if r.unknown["pad"][0] == "x"} == {
        (w, i) for w in range(4) for i in range(15)}
    assert not [p for p in (tmp_path / "runs").iterdir() if not p.name.endswith(".json")]  # no temp left


def test_cuda_out_of_memory_becomes_failed_record_with_hint(tiny_mvtec, tmp_path, monkeypatch):
    import rdbench.engine.run as run_mod

    def oom(*a, **k):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(run_mod, "train", oom)
    rec = run_one(RunConfig(protocol="mvtec", data_root=str(tiny_mvtec), category="carpet", backbone="resnet18",
                            weights="none", epochs=1, image_size=64, device="cpu"), tmp_path, progress=False)
    assert rec.status == "failed" and "out of memory" in rec.error
    assert "lower --batch-size or --image-size" in rec.error


def test_disk_full_is_an_error_and_earlier_records_stay(tmp_path, monkeypatch):
    path = tmp_path / "runs" / "r.json"
    write_json({"config": {}, "status": "ok", "n": 1}, path)
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_json({"config": {}, "status": "ok", "n": 2}, path)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert json.loads(path.read_text())["n"] == 1
    assert [p.name for p in path.parent.iterdir()] == ["r.json"]
