from __future__ import annotations

import json
import os

import pytest

from rdbench.config import RunConfig
from rdbench.records.schema import RunRecord
from rdbench.records.store import read_records, record_filename, write_json, write_record


def test_hash_stable_and_ignores_device():
    a = RunConfig(category="grid", seed=1)
    assert a.hash() == RunConfig.from_dict(json.loads(json.dumps(a.to_dict()))).hash()
    assert a.hash() == a.replace(device="cuda", eval_batch_size=1, data_root="/elsewhere").hash()
    assert a.hash() != a.replace(seed=2).hash()
    assert a.hash() != a.replace(layers=(2, 3)).hash()
    assert a.hash() != a.replace(extra={"k": 1}).hash()
    assert len(a.hash()) == 16


def test_fields_added_later_keep_earlier_ids():
    # ids of records written before amp/feature_cache_gb existed (computed with that version's RunConfig)
    assert RunConfig().hash() == "6d676aee6bacd2ca"
    assert RunConfig(backbone="resnet18", category="nut", seed=3).hash() == "2a02b41456d134af"
    assert RunConfig(feature_cache_gb=0.5).hash() == RunConfig().hash()  # a memory budget, not a result
    assert RunConfig(amp="bf16").hash() not in (RunConfig().hash(), RunConfig(amp="fp16").hash())


def test_paper_defaults():
    c = RunConfig()
    assert (c.lr, c.betas, c.epochs, c.batch_size, c.image_size, c.gaussian_sigma) == (
        0.005, (0.5, 0.999), 200, 16, 256, 4.0)
    assert (c.backbone, c.bottleneck, c.loss, c.layers) == ("wide_resnet50_2", "pre+oce+mff", "flat", (1, 2, 3))


@pytest.mark.parametrize("change,match", [
    ({"layers": (0, 1)}, "subset of 1, 2, 3"), ({"layers": ()}, "subset"), ({"layers": (1, 1)}, "repeats"),
    ({"epochs": -1}, "epochs must be >= 0"), ({"image_size": 100}, "multiple of 32"),
    ({"eval_protocol": "best"}, "final"),
    ({"amp": "fp32"}, "none, bf16, fp16"), ({"feature_cache_gb": -1}, "feature_cache_gb"),
])
def test_config_validation(change, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(**change)


def test_layer_order_does_not_matter():
    assert RunConfig(layers=(3, 2)).layers == (2, 3)
    assert RunConfig(layers=(3, 2)).hash() == RunConfig(layers=(2, 3)).hash()


def test_unknown_field_rejected():
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({"epoch": 3})


def test_atomic_write_keeps_old_record_on_failure(tmp_path):
    path = tmp_path / "runs" / record_filename(RunConfig())
    write_json({"config": {}, "status": "ok", "n": 1}, path)

    class Boom:  # json.dump fails half-way through
        def __repr__(self):
            raise RuntimeError("boom")

    with pytest.raises(TypeError):
        write_json({"config": {}, "status": "ok", "bad": Boom()}, path)
    assert json.loads(path.read_text())["n"] == 1
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind


def test_unwritable_results_dir_is_a_clear_error(tmp_path):
    if os.geteuid() == 0:
        target = tmp_path / "file"
        target.write_text("x")  # a file where a folder is needed fails for root too
        bad = target / "runs" / "r.json"
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        bad = tmp_path / "ro" / "runs" / "r.json"
    with pytest.raises(OSError, match="choose a writable --results folder"):
        write_record(RunRecord.new(RunConfig()), bad)


def test_read_records_skips_corrupt(tmp_path):
    runs = tmp_path / "runs"
    good = RunRecord.new(RunConfig(category="grid"))
    write_record(good, runs / "good.json")
    (runs / "broken.json").write_text("{ not json")
    (runs / "other.json").write_text("[1, 2]")
    (runs / "badconfig.json").write_text('{"config": {"epoch": 3}, "status": "ok"}')
    with pytest.warns(UserWarning) as caught:
        recs = read_records(tmp_path)
    assert [r.to_dict() for r in recs] == [good.to_dict()]
    said = " ".join(str(w.message) for w in caught)
    assert "broken.json" in said and "other.json" in said and "badconfig.json" in said and "epoch" in said


def test_records_are_world_readable(tmp_path):
    path = write_record(RunRecord.new(RunConfig()), tmp_path / "runs" / "r.json")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "banana"])
def test_bad_device_names(name):
    from rdbench.engine.device import resolve_device

    with pytest.raises(ValueError, match="cpu"):
        resolve_device(name)
