"""The sweep's progress bar (rdbench.bench.progress): [k/N] and the run, its epoch, and an ETA that is the dry-run
estimate until a run has finished and then follows the measured training rate."""

from __future__ import annotations

import re

import pytest

import rdbench.bench.executors as ex
from rdbench.bench.progress import SweepProgress, run_name
from rdbench.bench.reproduce import estimate_seconds
from rdbench.config import RunConfig
from rdbench.records.schema import RunRecord


def _config(root, **kw) -> RunConfig:
    base = dict(protocol="mvtec", data_root=str(root), category="carpet", backbone="resnet18", weights="none",
                epochs=1, batch_size=2, image_size=64, seed=7, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def _finished(config: RunConfig, train_s: float, resumed_from: int = 0) -> RunRecord:
    rec = RunRecord.new(config)
    rec.status, rec.timings = "ok", {"train_s": train_s, "resumed_from_epoch": resumed_from}
    return rec


def test_eta_is_the_estimate_then_follows_the_measured_rate():
    configs = [_config("/d", epochs=10), _config("/d", epochs=10, category="bottle"), _config("/d", epochs=10, seed=8)]
    est = [estimate_seconds(c, False) for c in configs]
    bar = SweepProgress(configs, cuda=False, enabled=False)
    assert bar.eta() == (pytest.approx(sum(est)), False)
    bar.start(0)
    bar.epoch(0, 5, 10)
    assert bar.eta() == (pytest.approx(est[0] / 2 + est[1] + est[2]), False)
    bar.finish(0, _finished(configs[0], train_s=3 * est[0]))  # three times slower than estimated
    assert bar.eta() == (pytest.approx(3 * (est[1] + est[2])), True)
    # a resumed run trained half its epochs here: its rate is its seconds over those (here: as estimated)
    bar.finish(1, _finished(configs[1], train_s=est[1] / 2, resumed_from=5))
    assert bar.eta() == (pytest.approx(2 * est[2]), True)  # the mean of 3 and 1
    bar.skip(2, "claimed by another process")
    assert bar.eta() == (0.0, True)


def test_local_sweep_bar_shows_k_of_n_the_run_and_an_eta(tiny_mvtec, tmp_path, capsys):
    configs = [_config(tiny_mvtec, epochs=2), _config(tiny_mvtec, epochs=2, category="bottle")]
    ex.run_configs(configs, tmp_path, progress=True, threads=1)
    lines = [line.strip() for line in re.split(r"[\r\n]", capsys.readouterr().err) if line.strip()]
    first = [line for line in lines if line.startswith("[1/2] mvtec/carpet resnet18 seed 7 (64 px)")]
    second = [line for line in lines if line.startswith("[2/2] mvtec/bottle resnet18 seed 7 (64 px)")]
    assert first and second
    assert any(line.startswith("[1/2] mvtec/carpet resnet18 seed 7 (64 px) epoch 2/2 |") for line in first)
    assert any("0/2 runs" in line for line in first) and any("1/2 runs" in line for line in second)
    # the dry-run estimate until the first run ends, then the measured rate
    assert all(re.search(r"elapsed, ETA \d+(\.\d)? (s|min|h) \(estimated\)$", line) for line in first)
    assert all(re.search(r"elapsed, ETA \d+(\.\d)? (s|min|h)$", line) for line in second)
    assert lines[-1].startswith("[2/2] done |") and "2/2 runs" in lines[-1]


def test_no_progress_still_says_what_was_skipped(tiny_mvtec, tmp_path, capsys):
    bar = SweepProgress([_config(tiny_mvtec)], cuda=False, enabled=False)
    bar.skip(0, "claimed by another process (h pid 1)")
    bar.close()
    err = capsys.readouterr().err
    assert err == "skipping mvtec/carpet resnet18 seed 7 (64 px): claimed by another process (h pid 1)\n"


def test_run_name_tells_apart_the_runs_of_a_table():
    assert run_name(RunConfig(category="bottle", backbone="resnet18", seed=112)) == "mvtec/bottle resnet18 seed 112"
    table5 = RunConfig(backbone="resnet18", image_size=128, bottleneck="pre+oce", layers=(2, 3))
    assert run_name(table5) == "mvtec/carpet resnet18 seed 111 (128 px, pre+oce, layers 2,3)"
