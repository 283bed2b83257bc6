"""Kill-and-resume, concurrent writers, and the failures a night-long sweep meets."""

from __future__ import annotations

import errno
import json
import multiprocessing as mp
import os
import re
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


# --- sweeps at full scale ---------------------------------------------------------------------------------------

def _sweep(data, results, *extra) -> list[str]:
    """Table 5 on carpet at 64 px: three small runs (its bottleneck variants)."""
    return _cli("reproduce", "--table", "5", "--data-root", data, "--limit-categories", "carpet",
                "--image-size", "64", "--results", results, *SMALL, *extra)


def _records(results: Path) -> dict[str, dict]:
    return {r["config_hash"]: r for r in (json.loads(p.read_text()) for p in _json_files(results / "runs"))}


def test_sweep_killed_mid_run_resumes_it_to_the_same_records(tiny_mvtec, tmp_path):
    extra = ("--epochs", "20", "--checkpoint-every-s", "0")
    # the uninterrupted sweep, alongside (same thread count: CPU numbers depend on it, not on timing)
    ref = subprocess.Popen(_sweep(tiny_mvtec, tmp_path / "ref", *extra), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        _killed_sweep_resumes(tiny_mvtec, tmp_path, ref, extra)
    finally:
        if ref.poll() is None:  # a failed assertion must not leave it running
            ref.kill()
            ref.communicate()


def _killed_sweep_resumes(tiny_mvtec, tmp_path, ref, extra):
    res = tmp_path / "res"
    proc = subprocess.Popen(_sweep(tiny_mvtec, res, *extra), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    ckpts = res / "checkpoints"
    assert _wait_for(lambda: any(ckpts.glob("*.resume.pt")) if ckpts.is_dir() else False, proc, timeout=600), \
        proc.communicate()[0]
    proc.send_signal(signal.SIGKILL)  # mid-run: nothing of the sweep runs after this, its claim stays behind
    proc.communicate(timeout=60)
    assert len(_records(res)) < 3 and list((res / "claims").glob("*.claim"))
    again = subprocess.run(_sweep(tiny_mvtec, res, *extra), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    resumed = re.findall(r"resumed (mvtec/carpet resnet18 seed 111 \(64 px[^)]*\)) from epoch (\d+)", again.stderr)
    assert len(resumed) == 1 and 1 <= int(resumed[0][1]) < 20, again.stderr
    ref_out = ref.communicate(timeout=900)[0]  # not wait(): a full pipe would block it
    assert ref.returncode == 0, ref_out
    want, got = _records(tmp_path / "ref"), _records(res)
    assert len(want) == 3 and want.keys() == got.keys()
    for h, rec in got.items():
        for key in ("status", "metrics", "per_image", "loss_curve"):
            assert json.dumps(rec[key]) == json.dumps(want[h][key]), (h, key)
    assert sorted(r["timings"]["resumed_from_epoch"] for r in got.values())[-1] == int(resumed[0][1])
    assert not list(ckpts.glob("*.resume.pt")) and not list((res / "claims").glob("*"))  # none left behind


def test_two_sweeps_on_one_folder_train_each_run_once(tiny_mvtec, tmp_path):
    """Both start together on one results folder (as two machines on shared storage would): each run is
    trained by exactly one of them (each prints the runs it trained), and both end with every record there."""
    args = _sweep(tiny_mvtec, tmp_path, "--epochs", "6")
    args[args.index("carpet")] = "carpet,bottle"  # six runs, so the two overlap
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=900) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.communicate()
    assert [p.returncode for p in procs] == [0, 0], outs
    # each prints a line per run it trained; six records and six trainings in all: each run trained once
    trained = [len(re.findall(r"^  mvtec/.*: ok$", out, re.M)) for out, _ in outs]
    records = _records(tmp_path)
    assert sum(trained) == 6 and len(records) == 6 and all(r["status"] == "ok" for r in records.values()), outs
    assert not _json_files(tmp_path / "runs" / "failed") and not list((tmp_path / "claims").glob("*"))
    for (out, _), n in zip(outs, trained):  # and each accounts for the rest: recorded before it, or skipped
        before = int(re.search(r"(\d+) already recorded", out).group(1))
        skipped = re.search(r"skipped (\d+) run\(s\) another process", out)
        assert n + before + (int(skipped.group(1)) if skipped else 0) == 6, out
