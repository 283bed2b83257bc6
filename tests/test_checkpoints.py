"""Checkpoints at full scale: the adaptive schedule, what a record says about its checkpoints, a
resumed "paper" run keeping its metric curve, and the disk estimate against the files really written."""

from __future__ import annotations

import json

import pytest

from rdbench.bench import disk
from rdbench.config import RunConfig
from rdbench.engine.run import checkpoint_paths, execute_run, run_one
from rdbench.engine.train import CHECKPOINT_TIME_SHARE, CheckpointSchedule, TrainEvents


def _config(root, **kw) -> RunConfig:
    base = dict(protocol="mvtec", data_root=str(root), category="carpet", backbone="resnet18", weights="none",
                epochs=2, batch_size=2, image_size=64, seed=7, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def _simulate(schedule: CheckpointSchedule, epochs: int, epoch_s: float, write_s: float) -> list[int]:
    """The epochs after which ``schedule`` writes, on a clock where an epoch and a write take fixed times."""
    now, written = 0.0, []
    for epoch in range(1, epochs + 1):
        now += epoch_s
        if schedule.due(now):
            schedule.wrote(now, now + write_s, 1)
            now += write_s
            written.append(epoch)
            # adaptive: the first write measures what one costs; from then on the share holds
            if schedule.every_s is None and len(written) > 1:
                assert schedule.write_s <= CHECKPOINT_TIME_SHARE * now + 1e-9
    return written


def test_adaptive_schedule_keeps_writes_within_their_share():
    # a write as long as half an epoch: the first after epoch 1, then whenever 5% of the time so far (writes
    # included) allows one more: the k-th once 10 (k+1) s have passed
    assert _simulate(CheckpointSchedule(None, 0.0), 60, epoch_s=1.0, write_s=0.5) == [1, 20, 29, 39, 48, 58]
    # a write 1/100 of an epoch (a fast disk): every epoch
    assert _simulate(CheckpointSchedule(None, 0.0), 5, epoch_s=1.0, write_s=0.01) == [1, 2, 3, 4, 5]
    # fixed intervals as before: 0 = every epoch, inf = never, N s = once N s passed since the last write
    assert _simulate(CheckpointSchedule(0, 0.0), 3, 1.0, 5.0) == [1, 2, 3]
    assert _simulate(CheckpointSchedule(float("inf"), 0.0), 3, 1.0, 5.0) == []
    assert _simulate(CheckpointSchedule(2.5, 0.0), 6, 1.0, 0.5) == [3, 6]
    with pytest.raises(ValueError, match="checkpoint_every_s"):
        CheckpointSchedule(-1, 0.0)


def test_record_counts_checkpoints_and_none_is_left_after_success(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec, epochs=3), tmp_path, progress=False, checkpoint_every_s=0)
    t = rec.timings
    assert rec.ok and t["checkpoints"] == 2  # after epochs 1 and 2: none after the last, nothing is left to resume
    assert t["checkpoint_write_s"] > 0 and t["checkpoint_bytes"] > 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [checkpoint_paths(tmp_path, rec.config)[1]
                                                                             .name]  # the kept model only
    default = run_one(_config(tiny_mvtec, epochs=3, seed=8), tmp_path, progress=False)  # adaptive
    assert default.timings["checkpoints"] >= 1  # the first comes after epoch 1 whatever the disk


class Kill(BaseException):
    """What SIGKILL does to a run, in-process: nothing after it runs (execute_run catches Exception only)."""


class KillAfter(TrainEvents):
    def __init__(self, epoch: int):
        self.at, self.resumed_at = epoch, None

    def resumed(self, epoch: int) -> None:
        self.resumed_at = epoch

    def epoch(self, epoch: int, total: int) -> None:  # called after the epoch's checkpoint
        if epoch == self.at:
            raise Kill


def test_resumed_paper_protocol_run_keeps_its_metric_curve(tiny_mvtec, tmp_path):
    cfg = _config(tiny_mvtec, epochs=6, eval_protocol="paper", eval_every=2)
    ref = execute_run(cfg, tmp_path / "ref", progress=False, checkpoint_every_s=0)
    assert ref.ok and [p["epoch"] for p in ref.metric_curve] == [2, 4, 6]
    work = tmp_path / "work"
    with pytest.raises(Kill):
        execute_run(cfg, work, progress=False, checkpoint_every_s=0, events=KillAfter(5))
    events = KillAfter(0)
    resumed = execute_run(cfg, work, progress=False, resume=True, checkpoint_every_s=0, events=events)
    assert resumed.ok and resumed.timings["resumed_from_epoch"] == 5 and events.resumed_at == 5
    # the points of epochs 2 and 4 were evaluated before the kill and came back from the checkpoint (as JSON)
    assert json.dumps(resumed.metric_curve) == json.dumps(ref.metric_curve)
    assert json.dumps(resumed.best_epoch_metrics) == json.dumps(ref.best_epoch_metrics)
    assert resumed.loss_curve == ref.loss_curve and resumed.metrics == ref.metrics


def test_disk_estimate_matches_the_files_written(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec, epochs=2), tmp_path, progress=False, checkpoint_every_s=0)
    model_bytes, ckpt_bytes = disk.state_bytes("resnet18", "pre+oce+mff")
    written = checkpoint_paths(tmp_path, rec.config)[1].stat().st_size
    assert abs(written - model_bytes) / written < 0.01  # the model file: its tensors and a little pickle
    # the checkpoint: a little less than estimated (a parameter without a gradient gets no Adam moments)
    assert 0.95 < rec.timings["checkpoint_bytes"] / ckpt_bytes <= 1.0
    assert disk.state_bytes("wide_resnet50_2", "pre+oce+mff")[1] > 1.0e9  # the 1.1 GB of the docs
    assert len(json.dumps(rec.to_dict())) < disk.RECORD_BYTES


def test_disk_check_refuses_naming_what_reduces_it(tmp_path):
    configs = [_config("/d", seed=s) for s in range(3)]
    need = disk.estimate(configs, keep_models=True, checkpoints_here=True)
    model_bytes, ckpt_bytes = disk.state_bytes("resnet18", "pre+oce+mff")
    assert need.models == 3 * model_bytes and need.checkpoint == 2 * ckpt_bytes
    assert need.total == need.models + need.checkpoint + 3 * disk.RECORD_BYTES
    assert disk.check_space(tmp_path, need, free=need.total) is None
    msg = disk.check_space(tmp_path / "new" / "folder", need, free=need.total - 1)
    assert f"not enough free disk for this sweep in {tmp_path / 'new' / 'folder'}" in msg
    assert "--keep-models none (saves" in msg and "--checkpoint-every-s inf" in msg and "Nothing was trained" in msg
    lean = disk.estimate(configs, keep_models=False, checkpoints_here=False)
    assert lean.total == 3 * disk.RECORD_BYTES and "--keep-models" not in disk.check_space(tmp_path, lean, free=0)
    assert disk.free_bytes(tmp_path / "not" / "yet") == disk.free_bytes(tmp_path)  # its nearest existing parent


def _reproduce(data, results, *extra):
    from typer.testing import CliRunner

    from rdbench.cli.app import app

    args = ["reproduce", "--table", "5", "--data-root", data, "--limit-categories", "carpet", "--image-size", "64",
            "--results", results, "--backbone", "resnet18", "--weights", "none", "--epochs", "1", "--batch-size",
            "2", "--no-progress", "--device", "cpu", *extra]
    return CliRunner().invoke(app, [str(a) for a in args])


def test_reproduce_refuses_a_short_disk_before_training(tiny_mvtec, tmp_path, monkeypatch):
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10 * 2**20)
    res = _reproduce(tiny_mvtec, tmp_path / "res")
    assert res.exit_code == 2, res.output
    assert "not enough free disk for this sweep" in res.output and "10.0 MB are free" in res.output
    assert "--keep-models none (saves 153.1 MB)" in res.output and "Nothing was trained" in res.output
    assert not list((tmp_path / "res").glob("runs/*.json"))
    dry = _reproduce(tiny_mvtec, tmp_path / "res", "--dry-run")
    assert "disk: about 520.3 MB: kept models 153.1 MB (3 runs), resume checkpoint 364.2 MB, records 3 x" in dry.output
    # what the refusal suggests fits: records only
    lean = _reproduce(tiny_mvtec, tmp_path / "res", "--keep-models", "none", "--checkpoint-every-s", "inf")
    assert lean.exit_code == 0, lean.output
    records = [json.loads(p.read_text()) for p in (tmp_path / "res" / "runs").glob("*.json")]
    assert len(records) == 3 and all(r["status"] == "ok" and "model_path" not in r for r in records)
    assert all(r["timings"]["checkpoints"] == 0 for r in records)
    assert not list((tmp_path / "res").glob("checkpoints/*"))


def test_reproduce_rejects_bad_checkpoint_and_claim_options(tiny_mvtec, tmp_path):
    for extra, message in ((["--keep-models", "some"], "valid --keep-models values: all, none"),
                           (["--checkpoint-every-s", "-1"], "--checkpoint-every-s must be >= 0"),
                           (["--claim-timeout-s", "0"], "--claim-timeout-s must be > 0"),
                           (["--checkpoint-dir", tmp_path], "--checkpoint-dir is for --executor ray")):
        res = _reproduce(tiny_mvtec, tmp_path / "res", *extra)
        assert res.exit_code == 2 and message in res.output, (extra, res.output)


class _Kill(TrainEvents):
    """Stands in for a killed process: an exception after epoch ``after``."""

    def __init__(self, after: int):
        self.after = after

    def epoch(self, epoch: int, total: int) -> None:
        if epoch == self.after:
            raise RuntimeError("killed")


def test_a_truncated_checkpoint_is_set_aside_and_the_run_starts_over(tiny_mvtec, tmp_path):
    config = _config(tiny_mvtec, epochs=3)
    killed = execute_run(config, tmp_path, progress=False, keep_model=False, checkpoint_every_s=0, events=_Kill(1))
    resume_ckpt, _ = checkpoint_paths(tmp_path, config)
    assert not killed.ok and resume_ckpt.is_file()
    resume_ckpt.write_bytes(resume_ckpt.read_bytes()[:1000])  # a machine lost mid-write of an older rdbench
    with pytest.warns(UserWarning, match="moved aside"):
        rec = execute_run(config, tmp_path, progress=False, resume=True, keep_model=False, checkpoint_every_s=0)
    assert rec.ok, rec.error
    assert rec.timings["resumed_from_epoch"] == 0
    assert resume_ckpt.with_name(resume_ckpt.name + ".corrupt").is_file()
    straight = execute_run(config, tmp_path / "straight", progress=False, keep_model=False)
    assert rec.loss_curve == straight.loss_curve and rec.metrics == straight.metrics


@pytest.mark.parametrize("error", [OSError(28, "No space left on device"),
                                   RuntimeError("[enforce fail at inline_container.cc] PytorchStreamWriter failed "
                                                "writing file data/0: file write failed")])
def test_a_failed_checkpoint_write_warns_leaves_no_temp_file_and_training_goes_on(tiny_mvtec, tmp_path,
                                                                                 monkeypatch, error):
    import torch

    def full_disk(obj, f, *a, **k):
        f.write(b"x" * 4096)  # part of the file reached the disk before it filled up
        raise error

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.warns(UserWarning, match="not written"):
        rec = execute_run(_config(tiny_mvtec, epochs=3), tmp_path, progress=False, keep_model=False,
                          checkpoint_every_s=0)
    assert rec.ok, rec.error
    assert rec.timings["checkpoints"] == 0 and len(rec.loss_curve) == 3
    assert not [p for p in (tmp_path / "checkpoints").iterdir() if ".tmp" in p.name]
