"""The typed run record: round trips, records written by earlier rdbench (schema 1), bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdbench.config import RunConfig
from rdbench.records.schema import SCHEMA_VERSION, RecordError, RunRecord
from rdbench.records.store import read_record, store_record, write_record

DATA = Path(__file__).parent / "data"
# Written by rdbench at commit 46de8fb (before records were typed): an ok run with eval protocol "paper"
# (2 epochs, resnet18, random teacher, the tiny test tree) and a failed one (a missing category).
OLD_OK, OLD_FAILED = DATA / "record_schema1_ok.json", DATA / "record_schema1_failed.json"


def test_old_ok_record_loads_with_every_field():
    raw = json.loads(OLD_OK.read_text())
    rec = read_record(OLD_OK)
    assert rec.ok and rec.schema_version == raw["schema_version"] == 1 < SCHEMA_VERSION  # kept, not upgraded
    assert rec.data == {} and rec.code == {} and rec.code_fingerprint is None  # schema 1 had no blocks
    assert rec.config.to_dict() == raw["config"] and rec.config_hash == raw["config_hash"] == rec.config.hash()
    assert rec.metrics == raw["metrics"] and set(rec.metrics) == {"image_auroc", "pixel_auroc", "pro_mvtec",
                                                                  "pro_rd4ad"}
    assert rec.per_image == raw["per_image"] and rec.loss_curve == raw["loss_curve"]
    assert rec.best("image_auroc") == raw["best_epoch_metrics"]["image_auroc"]["value"]
    assert rec.metric_curve == raw["metric_curve"] and rec.random_teacher
    assert rec.unknown == {}  # every key of schema 1 has a typed field
    assert rec.to_dict() == raw  # and writes back byte for byte the same JSON object


def test_old_failed_record_loads():
    raw = json.loads(OLD_FAILED.read_text())
    rec = read_record(OLD_FAILED)
    assert rec.status == "failed" and "nonexistent" in rec.error and rec.traceback
    assert rec.metrics == {} and rec.environment == raw["environment"]
    assert rec.to_dict() == raw


def test_round_trip_keeps_keys_of_a_newer_schema(tmp_path):
    rec = RunRecord.new(RunConfig(category="grid", seed=3))
    rec.status, rec.metrics, rec.counts = "ok", {"image_auroc": 0.75, "pro_mvtec": None}, {"train": 4}
    d = rec.to_dict() | {"lineage": {"parent": "abc"}}  # a field some later rdbench adds
    back = RunRecord.from_dict(json.loads(json.dumps(d)))
    assert back.unknown == {"lineage": {"parent": "abc"}} and back.to_dict() == d
    assert back.config == rec.config and back.metric("pro_mvtec") is None


def test_store_never_replaces_an_ok_record_with_a_failure(tmp_path):
    config = RunConfig(category="grid")
    ok = RunRecord.new(config)
    ok.status = "ok"
    first = Path(store_record(ok, tmp_path).record_path)
    failed = RunRecord.new(config)
    failed.fail("RuntimeError: boom")
    second = Path(store_record(failed, tmp_path).record_path)
    assert read_record(first).ok and second.parent.name == "failed" and read_record(second).error.endswith("boom")


@pytest.mark.parametrize("content,message", [
    ('{"status": "ok"}', "not an rdbench run record"),
    ('{"config": {}, "status": "done"}', "status 'done' is not one of running, ok, failed"),
    ('{"config": {}, "status": "ok", "schema_version": 99}', "schema_version 99; this rdbench reads up to 2"),
    ('{"config": {"layers": [4]}, "status": "ok"}', "its config does not load: layers must be"),
    ("[1, 2]", "not an rdbench run record"),
    ("{ no", "is not valid JSON"),
    ('{"config": {}, "status": "ok", "schema_version": 3}', "schema_version 3; this rdbench reads up to 2"),
])
def test_bad_records_fail_naming_the_file(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(RecordError, match="r.json") as exc:
        read_record(path)
    assert message in str(exc.value)


def test_written_record_is_json_a_reader_without_rdbench_can_use(tmp_path):
    rec = RunRecord.new(RunConfig(category="grid"))
    rec.fail("ValueError: x")
    d = json.loads(write_record(rec, tmp_path / "r.json").read_text())
    assert d["status"] == "failed" and d["config"]["category"] == "grid" and "metrics" not in d


class _Half:
    """Scores whose writing fails half-way, as a full disk would."""

    def to_npz(self, f):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")


def test_the_sidecar_and_its_digest_are_written_atomically_and_kept_on_rewrite(tmp_path):
    import hashlib

    from rdbench.metrics import summarize

    rec = RunRecord.new(RunConfig(category="grid"))
    rec.status, rec.scores = "ok", summarize([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    path = write_record(rec, tmp_path / "runs" / "r.json")
    side = path.with_name("r.scores.npz")
    raw = json.loads(path.read_text())
    assert raw["scores_file"] == side.name and raw["scores_sha256"] == hashlib.sha256(side.read_bytes()).hexdigest()
    before = side.read_bytes()
    rec.scores = _Half()
    with pytest.raises(OSError, match="No space"):
        write_record(rec, path)
    assert side.read_bytes() == before and json.loads(path.read_text()) == raw  # neither file touched
    assert sorted(p.name for p in path.parent.iterdir()) == ["r.json", "r.scores.npz"]  # no temp file left
    back = read_record(path)  # read back (no scores in memory) and rewritten: the digest stays the sidecar's
    assert back.scores_sha256 == raw["scores_sha256"] and write_record(back, path) and json.loads(
        path.read_text()) == raw
    del raw["scores_sha256"]  # a record of an older rdbench: loads, and writes back without the key
    old = RunRecord.from_dict(raw)
    assert old.scores_sha256 is None and "scores_sha256" not in old.to_dict()


def test_a_record_of_newer_rdbench_with_config_settings_this_one_lacks_loads_and_keeps_them(tmp_path):
    """Newer code may add a RunConfig field: its records must not look corrupt here (a sweep would retrain and
    overwrite them). They load, write the setting back, keep their own config hash, form cells of their own, and a
    sweep of the config without the setting neither reuses nor overwrites them."""
    from rdbench.bench.baseline import group_cells
    from rdbench.bench.reuse import plan_reuse
    from rdbench.records.store import record_path

    config = RunConfig(data_root=str(tmp_path), category="carpet", backbone="resnet18", epochs=1)
    plain = RunRecord.new(config)
    plain.status = "ok"
    newer = plain.to_dict()
    newer["config"] = {**newer["config"], "ema_decay": 0.999}  # a setting this rdbench has never heard of
    newer["config_hash"] = "0123456789abcdef"  # what the newer code hashed, the setting included
    path = tmp_path / "runs" / f"mvtec_carpet_resnet18_{newer['config_hash']}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(newer))
    rec = read_record(path)
    assert rec.config == config and rec.config_unknown == {"ema_decay": 0.999}
    assert rec.config_hash == "0123456789abcdef" != config.hash()
    assert rec.to_dict()["config"]["ema_decay"] == 0.999  # round trip: nothing of the newer record is lost
    plain.record_path = str(record_path(tmp_path, config))
    assert len(group_cells([plain, rec])) == 2  # never pooled with runs that lack the setting
    reuse = plan_reuse([config], tmp_path)
    assert reuse.todo == [config] and not reuse.corrupt  # its own run is to do; the newer record stays untouched
    assert record_path(tmp_path, config) != path
