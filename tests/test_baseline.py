"""Regression baselines: save, check, and the CLI's exit codes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rdbench.bench.baseline import cell_key, check, save_baseline
from rdbench.cli.app import app
from rdbench.config import RunConfig
from rdbench.records.provenance import code_block
from rdbench.records.schema import RunRecord
from rdbench.records.store import record_path, write_record

runner = CliRunner()


def _write(results, config: RunConfig, **metrics):
    rec = RunRecord.new(config)
    rec.status, rec.metrics, rec.environment = "ok", metrics, {"commit": "abc"}
    rec.code = code_block()  # made by the running code: `check` refuses records of other code
    write_record(rec, record_path(results, config))
    return rec


@pytest.fixture
def base(tmp_path):
    res = tmp_path / "base"
    c = RunConfig(category="carpet", backbone="resnet18", epochs=5)
    _write(res, c.replace(seed=1), image_auroc=0.90, pixel_auroc=0.95)
    _write(res, c.replace(seed=2), image_auroc=0.92, pixel_auroc=0.95)
    _write(res, RunConfig(category="grid", backbone="resnet18", epochs=5), image_auroc=0.80, pixel_auroc=0.90)
    save_baseline(res, tmp_path / "b.json", floor=0.01)
    return tmp_path, c


def test_cell_key_ignores_seed_device_and_root():
    c = RunConfig(category="carpet")
    assert cell_key(c.to_dict()) == cell_key(c.replace(seed=5, device="cuda", data_root="/x").to_dict())
    assert cell_key(c.to_dict()) != cell_key(c.replace(epochs=3).to_dict())
    assert cell_key(c.to_dict()) == cell_key(c.replace(feature_cache_gb=0).to_dict())
    assert cell_key(c.to_dict()) != cell_key(c.replace(amp="bf16").to_dict())
    old = {k: v for k, v in c.to_dict().items() if k not in ("amp", "feature_cache_gb")}  # a record from before
    assert cell_key(old) == cell_key(c.to_dict())  # both fields existed


def test_saved_statistics(base):
    tmp, c = base
    b = json.loads((tmp / "b.json").read_text())
    cell = b["cells"][cell_key(c.to_dict())]
    assert cell["seeds"] == [1, 2] and "seed" not in cell["config"]
    assert cell["metrics"]["image_auroc"]["mean"] == pytest.approx(0.91)
    assert cell["metrics"]["image_auroc"]["std"] == pytest.approx(0.0141421356)
    assert cell["metrics"]["pixel_auroc"]["n"] == 2 and b["floor"] == 0.01 and b["commits"] == ["abc"]


def test_unchanged_rerun_passes(base, tmp_path):
    tmp, c = base
    rows = check(tmp / "b.json", tmp / "base")
    assert {r.status for r in rows} == {"ok"} and len(rows) == 4
    for command in (["baseline", "check"], ["check"]):  # `rdbench check` is kept as an alias
        res = runner.invoke(app, [*command, "--baseline", str(tmp / "b.json"), "--results", str(tmp / "base")])
        assert res.exit_code == 0 and "4 ok" in res.output, (command, res.output)


def test_doctored_record_fails_and_names_cell(base):
    tmp, c = base
    fresh = tmp / "fresh"
    _write(fresh, c.replace(seed=1), image_auroc=0.90, pixel_auroc=0.95)
    _write(fresh, c.replace(seed=2), image_auroc=0.92, pixel_auroc=0.90)  # pixel AUROC down 2.5 points on avg
    _write(fresh, RunConfig(category="grid", backbone="resnet18", epochs=5), image_auroc=0.80, pixel_auroc=0.90)
    rows = {(r.label.split(" ")[0], r.metric): r for r in check(tmp / "b.json", fresh)}
    bad = rows[("mvtec/carpet/resnet18", "pixel_auroc")]
    assert bad.status == "REGRESSION" and bad.delta == pytest.approx(-0.025) and bad.tolerance == 0.01
    # image AUROC tolerance comes from the seed spread: 3 x 1.41 points
    assert rows[("mvtec/carpet/resnet18", "image_auroc")].tolerance == pytest.approx(0.0424264)
    res = runner.invoke(app, ["check", "--baseline", str(tmp / "b.json"), "--results", str(fresh)])
    assert res.exit_code == 1
    assert "REGRESSION" in res.output and "mvtec/carpet/resnet18" in res.output and "pixel_auroc" in res.output
    assert "-2.50" in res.output
    loose = runner.invoke(app, ["check", "--baseline", str(tmp / "b.json"), "--results", str(fresh),
                                "--tolerance", "0.03"])
    assert loose.exit_code == 0


def test_missing_cell_is_reported_not_passed(base):
    tmp, c = base
    fresh = tmp / "partial"
    _write(fresh, c.replace(seed=1), image_auroc=0.99, pixel_auroc=0.99)
    rows = check(tmp / "b.json", fresh)
    assert {r.status for r in rows if r.label.startswith("mvtec/grid")} == {"MISSING"}
    assert {r.status for r in rows if r.label.startswith("mvtec/carpet")} == {"improved"}
    res = runner.invoke(app, ["check", "--baseline", str(tmp / "b.json"), "--results", str(fresh)])
    assert res.exit_code == 1 and "MISSING" in res.output and "mvtec/grid" in res.output


def test_bad_inputs(tmp_path):
    (tmp_path / "b.json").write_text("{}")
    res = runner.invoke(app, ["check", "--baseline", str(tmp_path / "b.json"), "--results", str(tmp_path)])
    assert res.exit_code == 2 and "cannot read baseline" in res.output
    res = runner.invoke(app, ["baseline", "save", "--results", str(tmp_path / "empty"), "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "no successful run records" in res.output


@pytest.mark.parametrize("content,problem", [
    ("[]", "its top level is an array, not an object"),
    ('{"cells": 3}', 'its "cells" is a number, not an object'),
    ('{"schema": 1, "floor": "x", "cells": {}}', "its \"floor\" is 'x', not a number"),
    ('{"cells": {"k1": {"label": "mvtec/carpet/resnet18 (256px)", "config": {}}}}',
     "cell 'k1' (mvtec/carpet/resnet18 (256px)) has no \"metrics\" object"),
    ('{"cells": {"k1": {"metrics": {}}}}', "cell 'k1' is not an object with a \"label\""),
    ('{"cells": {"k1": {"label": "L", "metrics": {"image_auroc": {"mean": 0.9}}}}}',
     "metric 'image_auroc' of cell 'k1' (L) is not {\"mean\": number, \"std\": number or null}"),
])
def test_malformed_baseline_names_file_and_shape(tmp_path, content, problem):
    from rdbench.bench.baseline import EXPECTED

    (tmp_path / "b.json").write_text(content)
    res = runner.invoke(app, ["baseline", "check", "--baseline", str(tmp_path / "b.json"), "--results", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert (f"cannot read baseline {tmp_path / 'b.json'}: it is not an rdbench baseline ({problem}); expected "
            f"{EXPECTED}; make one with rdbench baseline save --results DIR --out FILE") in res.output
    assert "Traceback" not in res.output


def test_a_saved_baseline_has_the_shape_check_expects(base):
    from rdbench.bench.baseline import load_baseline

    tmp, _ = base
    assert set(load_baseline(tmp / "b.json")["cells"]) == set(json.loads((tmp / "b.json").read_text())["cells"])


def test_stat_check_flags_a_drop_beyond_noise_and_not_one_within_it(tmp_path):
    from test_compare import BASE, CONFIG, degrade, put

    from rdbench.bench.baseline_stat import check_stat

    put(tmp_path / "base", BASE)
    save_baseline(tmp_path / "base", tmp_path / "b.json")
    cell = next(iter(json.loads((tmp_path / "b.json").read_text())["cells"].values()))
    assert cell["scores"] == {"111": f"b.json.scores/{cell_key(CONFIG.to_dict())}_111.npz"}
    assert (tmp_path / cell["scores"]["111"]).is_file() and cell["data_fingerprint"] == "d" * 64
    put(tmp_path / "drop", degrade(0.05, 0.3))  # 5 points: its interval lies wholly below -1 point
    put(tmp_path / "noise", degrade(0.02, 1.0))  # 2 points: beyond the floor, but its interval holds 0
    rows = {r.metric: r for r in check_stat(tmp_path / "b.json", tmp_path / "drop")}
    assert rows["image_auroc"].status == "REGRESSION" and rows["image_auroc"].high < -0.01
    assert rows["pro_mvtec"].note.startswith("no interval for this metric")  # the default rule, said so
    noisy = {r.metric: r for r in check_stat(tmp_path / "b.json", tmp_path / "noise")}["image_auroc"]
    assert noisy.delta < -0.01 and noisy.low < 0 < noisy.high and noisy.status == "ok"
    assert {r.metric: r for r in check(tmp_path / "b.json", tmp_path / "noise")}["image_auroc"].status == "REGRESSION"
    args = ["baseline", "check", "--baseline", str(tmp_path / "b.json"), "--results"]
    res = runner.invoke(app, [*args, str(tmp_path / "drop"), "--stat"])
    assert res.exit_code == 1 and "REGRESSION" in res.output and "95% CI" in res.output, res.output
    assert runner.invoke(app, [*args, str(tmp_path / "noise"), "--stat"]).exit_code == 0
    assert runner.invoke(app, [*args, str(tmp_path / "noise")]).exit_code == 1  # default mode unchanged
    # the floor still applies: a 5-point drop with a tight interval passes a 10-point floor
    assert runner.invoke(app, [*args, str(tmp_path / "drop"), "--stat", "--floor", "0.1"]).exit_code == 0


def test_stat_check_needs_a_baseline_with_scores(base):
    tmp, _ = base  # records without sidecars, as before rdbench wrote them
    assert "scores" not in next(iter(json.loads((tmp / "b.json").read_text())["cells"].values()))
    res = runner.invoke(app, ["check", "--baseline", str(tmp / "b.json"), "--results", str(tmp / "base"), "--stat"])
    assert res.exit_code == 2 and "keeps no scores sidecars" in res.output and "Re-save it" in res.output
    assert "Traceback" not in res.output
