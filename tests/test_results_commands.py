"""`rdbench runs` (one line per record: exact rows, filters, JSON round trip) and results folders of the wrong
shape for `runs` and `report` (a runs/ folder itself, a folder without records): exit 2 and what was expected."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from rdbench.bench.runs_table import runs_frame
from rdbench.cli.app import app
from rdbench.config import RunConfig
from rdbench.records.provenance import code_fingerprint
from rdbench.records.schema import RunRecord
from rdbench.records.store import read_records, record_path, write_json

runner = CliRunner()
OLD_CODE = "f" * 64
DATA = "d0a7a" + "0" * 59


def _write(results, config: RunConfig, status: str, metrics: dict, finished: str, code: dict | None = None,
           data: dict | None = None, environment: dict | None = None) -> str:
    """A record as JSON, its data and code blocks written as keys (so this holds before and after
    RunRecord has those fields); returns its config hash."""
    rec = RunRecord.new(config)
    rec.status, rec.metrics, rec.finished, rec.environment = status, metrics, finished, environment or {}
    if status == "failed":
        rec.error = "DatasetError: gone"
    d = rec.to_dict()
    d.pop("data", None), d.pop("code", None)
    d.update({k: v for k, v in (("code", code), ("data", data)) if v})
    write_json(d, record_path(results, config))
    return config.hash()


@pytest.fixture
def results(tmp_path):
    res = tmp_path / "res"
    carpet = RunConfig(category="carpet", backbone="resnet18", epochs=5)
    hashes = {
        "carpet": _write(res, carpet, "ok", {"image_auroc": 0.9, "pixel_auroc": 0.95, "pro_rd4ad": 0.8,
                                             "pro_mvtec": 0.7}, "2024-05-01T10:00:00+00:00",
                         code={"fingerprint": code_fingerprint(), "version": "0.3.0", "git_commit": "abc",
                               "dirty": False},
                         data={"fingerprint": DATA, "files": 12, "bytes": 3400}),
        "bottle": _write(res, carpet.replace(category="bottle"), "failed", {}, "2024-05-01T11:00:00+00:00",
                         code={"fingerprint": OLD_CODE, "version": "0.2.0", "git_commit": None, "dirty": True}),
        "fmnist": _write(res, RunConfig(protocol="fashionmnist", category="1", backbone="resnet18", image_size=32),
                         "ok", {"auroc": 0.93, "auroc_max": 0.9}, "2024-04-30T09:00:00+00:00",
                         environment={"rdbench": "0.1.0"}),  # before records had code/data blocks
    }
    return res, hashes


def _rows(hashes):
    none = {"image_auroc": None, "pixel_auroc": None, "pro_rd4ad": None, "auroc": None}
    return [
        {"protocol": "fashionmnist", "category": "1", "backbone": "resnet18", "image_size": 32, "seed": 111,
         "status": "ok", **none, "auroc": 0.93, "version": "0.1.0", "code": None, "presentation": None, "data": None,
         "finished": "2024-04-30T09:00:00+00:00", "hash": hashes["fmnist"]},
        {"protocol": "mvtec", "category": "bottle", "backbone": "resnet18", "image_size": 256, "seed": 111,
         "status": "failed", **none, "version": "0.2.0", "code": "f" * 12, "presentation": None, "data": None,
         "finished": "2024-05-01T11:00:00+00:00", "hash": hashes["bottle"]},
        {"protocol": "mvtec", "category": "carpet", "backbone": "resnet18", "image_size": 256, "seed": 111,
         "status": "ok", **none, "image_auroc": 0.9, "pixel_auroc": 0.95, "pro_rd4ad": 0.8, "version": "0.3.0",
         "code": code_fingerprint()[:12], "presentation": None,
         "data": DATA[:12], "finished": "2024-05-01T10:00:00+00:00",
         "hash": hashes["carpet"]},
    ]


def _runs(*args):
    return runner.invoke(app, ["runs", *map(str, args)])


def test_runs_lists_every_record(results):
    res_dir, hashes = results
    res = _runs("--results", res_dir)
    assert res.exit_code == 0, res.output
    lines = [line.split() for line in res.output.splitlines()]
    assert lines[0] == ["protocol", "category", "backbone", "image_size", "seed", "status", "image_auroc",
                        "pixel_auroc", "pro_rd4ad", "auroc", "version", "code", "presentation", "data", "finished",
                        "hash"]
    assert lines[1:] == [
        ["fashionmnist", "1", "resnet18", "32", "111", "ok", "-", "-", "-", "0.9300", "0.1.0", "-", "-", "-",
         "2024-04-30T09:00:00+00:00", hashes["fmnist"]],
        ["mvtec", "bottle", "resnet18", "256", "111", "failed", "-", "-", "-", "-", "0.2.0", "f" * 12, "-", "-",
         "2024-05-01T11:00:00+00:00", hashes["bottle"]],
        ["mvtec", "carpet", "resnet18", "256", "111", "ok", "0.9000", "0.9500", "0.8000", "-", "0.3.0",
         code_fingerprint()[:12], "-", DATA[:12], "2024-05-01T10:00:00+00:00", hashes["carpet"]]]


def test_json_round_trip(results):
    res_dir, hashes = results
    res = _runs("--results", res_dir, "--json")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert rows == _rows(hashes)
    frame = runs_frame(read_records(res_dir))
    pd.testing.assert_frame_equal(pd.DataFrame(rows), frame)


@pytest.mark.parametrize("args,which", [(["--status", "failed"], ["bottle"]),
                                        (["--status", "ok"], ["fmnist", "carpet"]),
                                        (["--stale"], ["fmnist", "bottle"]),
                                        (["--stale", "--status", "ok"], ["fmnist"])])
def test_filters(results, args, which):
    res_dir, hashes = results
    res = _runs("--results", res_dir, "--json", *args)
    assert res.exit_code == 0, res.output
    assert [r["hash"] for r in json.loads(res.stdout)] == [hashes[k] for k in which]


def test_no_match_unknown_status_and_a_corrupt_record(results):
    res_dir, _ = results
    res = _runs("--results", res_dir, "--status", "running")
    assert res.exit_code == 0 and res.output == f"no records with status running in {res_dir / 'runs'} (3 in all)\n"
    assert _runs("--results", res_dir, "--status", "running", "--json").stdout == "[]\n"
    res = _runs("--results", res_dir, "--status", "done")
    assert res.exit_code == 2 and "unknown status 'done'; valid statuses: running, ok, failed" in res.output
    (res_dir / "runs" / "zz_broken.json").write_text("{")
    res = _runs("--results", res_dir, "--json")
    assert res.exit_code == 0 and len(json.loads(res.stdout)) == 3
    assert "warning: skipping unreadable record" in res.stderr and "zz_broken.json" in res.stderr


@pytest.mark.parametrize("command", ["runs", "report"])
def test_a_runs_folder_is_not_a_results_folder(results, command):
    res_dir, _ = results
    res = runner.invoke(app, [command, "--results", str(res_dir / "runs")])
    assert res.exit_code == 2, res.output
    assert (f"{res_dir / 'runs'} holds run records itself: this looks like a runs/ folder; pass its parent "
            f"(--results {res_dir})") in res.output
    assert "Traceback" not in res.output and not (res_dir / "runs" / "report").exists()


@pytest.mark.parametrize("command", ["runs", "report"])
def test_a_folder_without_records_says_what_was_expected(tmp_path, command):
    (tmp_path / "notes.json").write_text("[1, 2]")  # JSON, but no record
    res = runner.invoke(app, [command, "--results", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert (f"no run records in {tmp_path}: expected <results>/runs/*.json (run records, as run, reproduce and demo "
            "write them), optionally sweeps/ and profiles/") in res.output
    assert "Traceback" not in res.output and not (tmp_path / "report").exists()
    res = runner.invoke(app, [command, "--results", str(tmp_path / "nowhere")])
    assert res.exit_code == 2 and f"no results folder at {tmp_path / 'nowhere'}" in res.output


def test_report_of_profiles_alone_is_still_made(tmp_path):
    (tmp_path / "profiles").mkdir()
    res = runner.invoke(app, ["report", "--results", str(tmp_path)])
    assert res.exit_code == 0 and (tmp_path / "report" / "index.html").is_file(), res.output
    res = _runs("--results", tmp_path)  # but there is nothing to list
    assert res.exit_code == 2 and "no run records in" in res.output
