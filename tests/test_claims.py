"""Claims of runs in a results folder (rdbench.records.claims): exclusive, kept alive, taken over when stale,
released whatever way a run ends; and how a sweep skips what another process claimed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import rdbench.bench.executors as ex
import rdbench.records.claims as claims_mod
from rdbench.bench.driver import SweepSettings
from rdbench.config import RunConfig
from rdbench.records.claims import HOST, Claims, claim_path
from rdbench.records.store import record_path


def _write_claim(path, **kw) -> dict:
    d = {"host": "elsewhere", "pid": 4242, "pid_started": None, "started": "2024-01-01T00:00:00+00:00",
         "heartbeat": claims_mod.time.time(), "token": "theirs"}
    d.update(kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(d))
    return d


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # reaped: no such process any more (pids are not reused this fast)
    return proc.pid


def test_a_claim_is_exclusive_and_released(tmp_path):
    with Claims(tmp_path) as mine, Claims(tmp_path) as other:
        assert mine.acquire("run-a") is None
        d = json.loads(claim_path(tmp_path, "run-a").read_text())
        assert (d["host"], d["pid"]) == (HOST, os.getpid()) and d["started"] and d["heartbeat"] and d["token"]
        holder = other.acquire("run-a")  # this very process is alive: the claim is live
        assert holder is not None and holder.pid == os.getpid() and holder.token == d["token"]
        assert other.acquire("run-b") is None  # another run is free
        mine.release("run-a")
        assert not claim_path(tmp_path, "run-a").exists()
        assert other.acquire("run-a") is None
    assert not list((tmp_path / "claims").iterdir())  # close() released what was still held


def test_claim_of_another_host_is_live_until_its_heartbeat_times_out(tmp_path):
    path = claim_path(tmp_path, "run")
    _write_claim(path, heartbeat=claims_mod.time.time() - 30)
    with Claims(tmp_path, timeout_s=600) as claims:
        holder = claims.acquire("run")
        assert holder is not None and holder.host == "elsewhere" and "heartbeat 30 s ago" in holder.describe()
        assert json.loads(path.read_text())["token"] == "theirs"  # untouched
    _write_claim(path, heartbeat=claims_mod.time.time() - 601)
    with Claims(tmp_path, timeout_s=600) as claims:
        assert claims.acquire("run") is None  # stale: taken over
        d = json.loads(path.read_text())
        assert d["token"] != "theirs" and d["host"] == HOST and d["pid"] == os.getpid()
        assert not path.with_name(path.name + ".takeover").exists()


def test_claim_of_a_dead_process_of_this_host_is_taken_over_at_once(tmp_path):
    path = claim_path(tmp_path, "run")
    _write_claim(path, host=HOST, pid=_dead_pid())  # fresh heartbeat, but its process is gone
    with Claims(tmp_path) as claims:
        assert claims.acquire("run") is None
    # a live pid that another process got later (its start time differs) is gone too
    _write_claim(path, host=HOST, pid=os.getpid(), pid_started=1.0)
    with Claims(tmp_path) as claims:
        assert claims.acquire("run") is None
        assert json.loads(path.read_text())["token"] != "theirs"


def test_takeover_is_one_at_a_time(tmp_path):
    path = claim_path(tmp_path, "run")
    _write_claim(path, heartbeat=0.0)  # stale
    lock = path.with_name(path.name + ".takeover")
    lock.touch()  # another process is taking it over right now
    with Claims(tmp_path) as claims:
        assert claims.acquire("run") is not None  # so this one leaves it
        assert json.loads(path.read_text())["token"] == "theirs"
        os.utime(lock, (0, 0))  # a taker that died mid-way long ago: its lock is cleared, the claim taken
        assert claims.acquire("run") is None
    assert not lock.exists()


def test_heartbeat_refreshes_and_a_claim_taken_over_is_dropped_not_overwritten(tmp_path, monkeypatch):
    claims = Claims(tmp_path, heartbeat_s=3600)  # the thread sleeps; beat() is called by hand
    assert claims.acquire("run") is None
    path = claim_path(tmp_path, "run")
    first = json.loads(path.read_text())
    now = first["heartbeat"] + 100
    monkeypatch.setattr(claims_mod.time, "time", lambda: now)
    claims.beat()
    second = json.loads(path.read_text())
    assert second["heartbeat"] == now and second["token"] == first["token"] and second["started"] == first["started"]
    _write_claim(path, token="taker")  # another process took it over (ours looked dead to it)
    with pytest.warns(UserWarning, match="taken over by another process"):
        claims.beat()
    assert claims.held() == []
    claims.close()
    assert json.loads(path.read_text())["token"] == "taker"  # release left it alone


# --- in a sweep ----------------------------------------------------------------------------------------------

def _config(root, **kw) -> RunConfig:
    base = dict(protocol="mvtec", data_root=str(root), category="carpet", backbone="resnet18", weights="none",
                epochs=1, batch_size=2, image_size=64, seed=7, device="cpu")
    base.update(kw)
    return RunConfig(**base)


def _claims_left(results) -> list[str]:
    folder = results / "claims"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_sweep_releases_claims_after_success_and_failure(tiny_mvtec, tmp_path):
    configs = [_config(tiny_mvtec), _config(tiny_mvtec, category="zipper")]
    recs = ex.run_configs(configs, tmp_path, progress=False, threads=1)
    assert [r.status for r in recs] == ["ok", "failed"]
    assert _claims_left(tmp_path) == []


def test_sweep_releases_its_claim_when_interrupted(tiny_mvtec, tmp_path, monkeypatch):
    seen = []

    def interrupted(config, results_dir, **kw):
        seen.append(_claims_left(results_dir))  # held while the run trains
        raise KeyboardInterrupt

    monkeypatch.setattr(ex, "execute_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        ex.run_configs([_config(tiny_mvtec)], tmp_path, progress=False)
    assert seen == [[record_path(tmp_path, _config(tiny_mvtec)).stem + ".claim"]]
    assert _claims_left(tmp_path) == []


def test_sweep_skips_runs_claimed_by_a_live_process_and_says_why(tiny_mvtec, tmp_path, capsys):
    taken, free = _config(tiny_mvtec), _config(tiny_mvtec, seed=8)
    _write_claim(claim_path(tmp_path, record_path(tmp_path, taken).stem))
    skipped = []
    recs = ex.run_configs([taken, free], tmp_path, progress=False, threads=1,
                          on_skip=lambda c, why: skipped.append((c, why)))
    assert [r.config for r in recs] == [free] and recs[0].ok
    ((config, why),) = skipped
    assert config == taken and why.startswith("claimed by another process (elsewhere pid 4242")
    assert "skipping mvtec/carpet resnet18 seed 7 (64 px): claimed by another process" in capsys.readouterr().err
    assert not record_path(tmp_path, taken).exists()
    assert _claims_left(tmp_path) == [record_path(tmp_path, taken).stem + ".claim"]  # theirs, left alone


def test_sweep_skips_a_run_recorded_by_another_process_since_it_looked(tiny_mvtec, tmp_path):
    config = _config(tiny_mvtec)
    first = ex.run_configs([config], tmp_path, progress=False, threads=1)  # "another sweep" records it ...
    assert first[0].ok
    settings = SweepSettings(since=record_path(tmp_path, config).stat().st_mtime - 1)  # ... after this one looked
    skipped = []
    assert ex.run_configs([config], tmp_path, progress=False, settings=settings,
                          on_skip=lambda c, why: skipped.append(why)) == []
    assert skipped == ["recorded by another process while this sweep ran"]
    # a sweep that looked after the record was written (a rerun it asked for) does train it
    assert [r.ok for r in ex.run_configs([config], tmp_path, progress=False, threads=1)] == [True]
