"""Issue 11's scenario end to end, through the command line as a user runs it: a sweep on synthetic data laid
out under MVTec category names, killed and restarted, then changed data, then a record of other code."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rdbench.records.store import read_record, write_record

pytestmark = pytest.mark.slow
CATEGORIES = {"brick": "carpet", "nut": "bottle"}  # synthetic texture / object -> an MVTec name


def _cli(*args, check: bool = False) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, "-m", "rdbench", *map(str, args)], capture_output=True, text=True,
                         timeout=900)
    assert not check or res.returncode == 0, res.stdout + res.stderr
    return res


def _sweep_args(data: Path, results: Path) -> list:
    # Table 5 (three bottleneck variants) on the two categories: 6 runs of resnet18 at 64 px, 4 epochs
    return ["reproduce", "--table", "5", "--data-root", data, "--limit-categories", ",".join(CATEGORIES.values()),
            "--image-size", "64", "--epochs", "4", "--backbone", "resnet18", "--weights", "none", "--batch-size", "4",
            "--checkpoint-every-s", "0", "--keep-models", "none", "--no-progress", "--device", "cpu",
            "--results", results]


def _metrics(results: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text())["metrics"] for p in sorted((results / "runs").glob("*.json"))}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    _cli("make-synthetic", "--out", root / "raw", "--seed", "0", "--categories", ",".join(CATEGORIES),
         "--n-train", "16", "--n-test-good", "4", "--n-test-bad", "6", "--size", "64", check=True)
    for src, dst in CATEGORIES.items():
        shutil.move(root / "raw" / src, root / dst)
    return root


def test_killed_resumed_changed_data_and_stale_code(data, tmp_path):
    ref, res = tmp_path / "uninterrupted", tmp_path / "killed"
    _cli(*_sweep_args(data, ref), check=True)
    assert len(_metrics(ref)) == 6

    # killed with SIGKILL once the second run has written its first checkpoint, then started again
    proc = subprocess.Popen([sys.executable, "-m", "rdbench", *map(str, _sweep_args(data, res))],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if len(list((res / "runs").glob("*.json"))) == 1 and list((res / "checkpoints").glob("*.resume.pt")):
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the sweep ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(_metrics(res)) == 1  # the second run left a checkpoint, not a record
    again = _cli(*_sweep_args(data, res), check=True)
    assert "resumed " in again.stdout + again.stderr and " from epoch " in again.stdout + again.stderr
    assert _metrics(res) == _metrics(ref)  # bit-identical on CPU to the uninterrupted sweep

    # one added training image: exactly the three runs of that category run again
    Image.fromarray(np.full((64, 64, 3), 120, np.uint8)).save(data / "carpet" / "train" / "good" / "extra.png")
    try:
        changed = _cli(*_sweep_args(data, res), check=True)
        out = changed.stdout + changed.stderr
        assert "3 runs have records made from other data" in out and "running 3" in out, out
        assert {r.config.category for r in map(read_record, (res / "runs").glob("*.json"))} == {"carpet", "bottle"}
    finally:
        (data / "carpet" / "train" / "good" / "extra.png").unlink()

    # a record of other code: the regression check refuses it by name, the sweep reports it as stale
    _cli("baseline", "save", "--results", res, "--out", tmp_path / "baseline.json", check=True)
    victim = sorted((res / "runs").glob("mvtec_bottle_*.json"))[0]
    rec = read_record(victim)
    rec.code = rec.code | {"fingerprint": "f" * 64}
    write_record(rec, victim)
    checked = _cli("baseline", "check", "--baseline", tmp_path / "baseline.json", "--results", res)
    assert checked.returncode == 1 and victim.name in checked.stderr + checked.stdout
    stale = _cli(*_sweep_args(data, res), "--dry-run")
    assert "1 records from code ffffffffffff, not the running code" in stale.stdout + stale.stderr
