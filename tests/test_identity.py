"""Record identity: the data and code a record was made from, and what a sweep may reuse because of it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rdbench.bench.reuse import plan_reuse, stale_records
from rdbench.cli.app import app
from rdbench.config import RunConfig
from rdbench.engine.protocol import get_protocol
from rdbench.engine.run import data_block, run_one
from rdbench.records.fingerprint import CACHE_NAME, DigestCache, data_fingerprint, results_cache
from rdbench.records.provenance import code_block, code_fingerprint
from rdbench.records.store import read_record, record_path, write_record
from rdbench.report.runs import identity_warnings

runner = CliRunner()


def _config(root, **kw) -> RunConfig:
    base = dict(protocol="mvtec", data_root=str(root), category="carpet", backbone="resnet18", weights="none",
                epochs=1, batch_size=2, image_size=64, seed=7, device="cpu")
    return RunConfig(**(base | kw))


def _oracle(root: Path, files: list[Path]) -> str:
    """The definition, restated: sha256 over sorted 'relative path NUL size NUL sha256 LF' lines."""
    lines = sorted(f"{f.relative_to(root).as_posix()}\0{f.stat().st_size}\0"
                   f"{hashlib.sha256(f.read_bytes()).hexdigest()}\n" for f in files)
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _add_train_image(root: Path, category: str = "carpet") -> None:
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(root / category / "train" / "good" / "999.png")


def test_fingerprint_is_the_definition_and_moves_with_the_bytes_not_the_path(tiny_mvtec, tmp_path):
    root, files = get_protocol("mvtec").data_files(_config(tiny_mvtec))
    assert len(files) == 4 + 4 + 2  # train, test images, masks of the two defective images
    fp = data_fingerprint(root, files)
    assert fp == {"fingerprint": _oracle(root, files), "files": 10, "bytes": sum(f.stat().st_size for f in files)}
    moved = shutil.copytree(tiny_mvtec, tmp_path / "elsewhere")
    assert data_block(_config(moved))["fingerprint"] == fp["fingerprint"]  # same bytes at another path
    _add_train_image(moved)
    assert data_block(_config(moved))["files"] == 11
    assert data_block(_config(moved))["fingerprint"] != fp["fingerprint"]
    assert data_block(_config(tiny_mvtec, category="bottle"))["fingerprint"] != fp["fingerprint"]


def test_digest_cache_hashes_each_file_once_and_survives_damage(tiny_mvtec, tmp_path):
    config = _config(tiny_mvtec)
    first = results_cache(tmp_path)
    a = data_block(config, first)
    first.save()
    assert (first.hashed, first.reused) == (10, 0) and (tmp_path / CACHE_NAME).is_file()
    second = results_cache(tmp_path)
    assert data_block(config, second) == a and (second.hashed, second.reused) == (0, 10)
    mask = next((tiny_mvtec / "carpet" / "ground_truth").rglob("*.png"))
    mask.write_bytes(mask.read_bytes() + b"\0")  # size and mtime change: hashed again
    third = results_cache(tmp_path)
    assert data_block(config, third) != a and third.hashed == 1
    (tmp_path / CACHE_NAME).write_text("{ damaged")
    assert data_block(config, DigestCache(tmp_path / CACHE_NAME)) == data_block(config)  # a full read, same answer


def test_record_carries_data_and_code(tiny_mvtec, tmp_path):
    rec = run_one(_config(tiny_mvtec), tmp_path, progress=False)
    assert rec.ok, rec.error
    assert rec.data == data_block(_config(tiny_mvtec)) and rec.code == code_block()
    assert rec.code["fingerprint"] == code_fingerprint() and len(rec.code["fingerprint"]) == 64
    on_disk = json.loads(Path(rec.record_path).read_text())
    assert on_disk["schema_version"] == 2 and on_disk["data"]["files"] == 10 and on_disk["code"]["version"]
    failed = run_one(_config(tiny_mvtec, category="zipper"), tmp_path, progress=False)
    assert failed.code == code_block() and failed.data == {}  # no data to fingerprint


@pytest.fixture
def swept(tiny_mvtec, tmp_path):
    """Two ok records (carpet, bottle) and a failed one (zipper) made by the running code."""
    configs = [_config(tiny_mvtec), _config(tiny_mvtec, category="bottle"), _config(tiny_mvtec, category="zipper")]
    for c in configs:
        run_one(c, tmp_path / "res", progress=False)
    return configs, tmp_path / "res"


def test_reuse_needs_same_config_and_data(swept, tiny_mvtec):
    configs, res = swept
    reuse = plan_reuse(configs, res)
    assert reuse.todo == [] and len(reuse.reused) == 2 and [r.config.category for r in reuse.kept_failed] == ["zipper"]
    assert reuse.summary() == [next(line for line in reuse.summary() if "--rerun failed" in line)]
    _add_train_image(tiny_mvtec, "carpet")  # one more training image: exactly that category runs again
    reuse = plan_reuse(configs, res)
    assert reuse.todo == [configs[0]] and reuse.data_changed == [configs[0]]
    assert [r.config.category for r in reuse.reused] == ["bottle"]
    assert plan_reuse(configs, res, ["failed"]).todo == [configs[0], configs[2]]
    assert plan_reuse(configs, res, ["all"]).todo == configs
    with pytest.raises(ValueError, match="unknown rerun 'old'; valid reruns: stale, failed, all"):
        plan_reuse(configs, res, ["old"])


def _alter_code(path: Path) -> None:
    rec = read_record(path)
    rec.code = rec.code | {"fingerprint": "0" * 64}
    write_record(rec, path)


def test_records_of_other_code_are_reused_loudly_and_checked_never(swept):
    configs, res = swept
    path = record_path(res, configs[1])
    _alter_code(path)
    reuse = plan_reuse(configs, res)
    assert [r.config.category for r in reuse.stale] == ["bottle"] and reuse.todo == []
    line = next(s for s in reuse.summary() if "not the running code" in s)
    assert line.startswith("1 records from code 000000000000, not the running code "
                           f"{code_fingerprint()[:12]}") and "`--rerun stale` redoes them" in line
    assert plan_reuse(configs, res, ["stale"]).todo == [configs[1]]
    assert [r.config.category for r in stale_records([read_record(p) for p in (res / "runs").glob("*.json")])] == [
        "bottle"]
    from rdbench.bench.baseline import save_baseline

    save_baseline(res, res / "b.json")
    out = runner.invoke(app, ["baseline", "check", "--baseline", str(res / "b.json"), "--results", str(res)])
    assert out.exit_code == 1 and path.name in out.output and "not made by the running code" in out.output
    assert "--allow-stale" in out.output and "Traceback" not in out.output
    out = runner.invoke(app, ["baseline", "check", "--baseline", str(res / "b.json"), "--results", str(res),
                              "--allow-stale"])
    assert out.exit_code == 0, out.output
    warned = identity_warnings([read_record(p) for p in sorted((res / "runs").glob("*.json"))])
    assert len(warned) == 1 and "mix 2 code versions" in warned[0] and "mvtec/bottle resnet18 64px seed 7" in warned[0]


def test_old_records_without_fingerprints_count_as_stale(tiny_mvtec, tmp_path):
    config = _config(tiny_mvtec)
    rec = run_one(config, tmp_path, progress=False)
    rec.data, rec.code = {}, {}  # as schema 1 wrote it
    write_record(rec, record_path(tmp_path, config))
    reuse = plan_reuse([config], tmp_path)
    assert reuse.todo == [] and len(reuse.stale) == 1 and "records from code none" in reuse.summary()[0]


def test_report_names_categories_made_from_different_data(swept, tiny_mvtec):
    configs, res = swept
    recs = [read_record(record_path(res, c)) for c in configs[:2]]
    other = read_record(record_path(res, configs[0]))
    other.config, other.data = other.config.replace(seed=8), other.data | {"fingerprint": "f" * 64}
    warned = identity_warnings([*recs, other])
    assert warned == ["records of one dataset were made from different data: mvtec/carpet (2 fingerprints); the "
                      "cells of these categories average runs on different bytes"]


def test_presentation_edits_keep_the_code_fingerprint_and_numeric_edits_move_it(tmp_path, monkeypatch):
    """Editing the report's CSS or a command's help must not make records stale or discard resume checkpoints
    (both follow ``code_fingerprint``); editing the scoring must. Measured on a copy of the package."""
    from rdbench.records import provenance

    copy = tmp_path / "rdbench"
    shutil.copytree(provenance.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_DIR", copy)

    def fingerprints() -> tuple[str, str]:
        provenance.code_fingerprint.cache_clear()
        provenance.presentation_fingerprint.cache_clear()
        return provenance.code_fingerprint(), provenance.presentation_fingerprint()

    try:
        code, shown = fingerprints()
        css = copy / "report" / "templates" / "report.css"
        css.write_text(css.read_text() + "\n/* a wider table */\n")
        cli = copy / "cli" / "golden.py"
        cli.write_text(cli.read_text().replace("Run the float64 suite", "Run the suite of float64 runs"))
        code2, shown2 = fingerprints()
        assert code2 == code and shown2 != shown
        scoring = copy / "engine" / "scoring.py"
        scoring.write_text(scoring.read_text().replace("GAUSSIAN_TRUNCATE = 4.0", "GAUSSIAN_TRUNCATE = 4.5"))
        assert fingerprints()[0] != code
    finally:
        monkeypatch.undo()
        fingerprints()


def test_records_keep_both_fingerprints_and_runs_shows_both(tiny_mvtec, tmp_path):
    from rdbench.records.provenance import presentation_fingerprint

    rec = run_one(_config(tiny_mvtec, epochs=0), tmp_path, progress=False, keep_model=False)
    assert rec.code["fingerprint"] == code_fingerprint() and rec.code["presentation"] == presentation_fingerprint()
    assert code_fingerprint() != presentation_fingerprint()
    res = runner.invoke(app, ["runs", "--results", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    [row] = json.loads(res.stdout)
    assert row["code"] == code_fingerprint()[:12] and row["presentation"] == presentation_fingerprint()[:12]
