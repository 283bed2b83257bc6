"""`rdbench compare` and `report --compare-to` on doctored records: synthetic image scores of 100 test images
(50 normal, 50 anomalous), their ScoreSummary sidecars written by the record store."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from rdbench.bench.compare import NO_SIDECAR, SUMMARY_NAMES, compare_dirs, diff_interval
from rdbench.cli.app import app
from rdbench.config import RunConfig
from rdbench.metrics import image_ap, image_auroc, metric_values, resample_weights, summarize
from rdbench.records.provenance import code_block
from rdbench.records.schema import RunRecord
from rdbench.records.store import store_record

runner = CliRunner()
Y = np.r_[np.zeros(50, int), np.ones(50, int)]
PATHS = [f"carpet/test/{'good' if y == 0 else 'hole'}/{i:03d}.png" for i, y in enumerate(Y)]
BASE = np.random.default_rng(0).normal(0, 1, 100) + 1.8 * Y  # image AUROC 0.89
CONFIG = RunConfig(category="carpet", backbone="resnet18", epochs=5)


def degrade(drop: float, noise: float, seed: int = 1) -> np.ndarray:
    """BASE with noise and the anomalous images shifted down until image AUROC is ``drop`` below BASE's."""
    b = BASE + np.random.default_rng(seed).normal(0, noise, Y.size)
    target, lo, hi = image_auroc(Y, BASE) - drop, -3.0, 3.0
    for _ in range(60):  # AUROC falls as the shift grows
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if image_auroc(Y, b - mid * Y) > target else (lo, mid)
    return b - hi * Y


def put(results, scores, seed: int = 111, fingerprint: str = "d" * 64, sidecar: bool = True, paths=PATHS,
        config: RunConfig = CONFIG) -> RunRecord:
    rec = RunRecord.new(config.replace(seed=seed))
    rec.status, rec.code, rec.data = "ok", code_block(), {"fingerprint": fingerprint}
    rec.metrics = {"image_auroc": image_auroc(Y, scores), "image_ap": image_ap(Y, scores), "pro_mvtec": 0.9}
    rec.per_image = {"path": list(paths), "label": Y.tolist(), "score": [float(s) for s in scores]}
    rec.scores = summarize(Y, scores) if sidecar else None
    return store_record(rec, results)


def _cli(*args):
    return runner.invoke(app, ["compare", *map(str, args)])


@pytest.fixture
def pair(tmp_path):
    """A: BASE; B5: a 5-point image AUROC drop; B02: a 0.2-point one."""
    a, b5, b02 = tmp_path / "a", tmp_path / "b5", tmp_path / "b02"
    put(a, BASE)
    put(b5, degrade(0.05, 0.3))
    put(b02, degrade(0.002, 0.05))
    return a, b5, b02


def _row(rows, metric="image_auroc"):
    return next(r for r in rows if r.metric == metric)


def test_five_point_drop_is_significant_and_a_fifth_of_a_point_is_not(pair):
    a, b5, b02 = pair
    big, small = _row(compare_dirs(a, b5)), _row(compare_dirs(a, b02))
    assert big.delta == pytest.approx(-0.05, abs=1e-3) and small.delta == pytest.approx(-0.002, abs=1e-3)
    assert big.significant and big.regression and big.high < 0 and big.resampled == "images"
    assert not small.significant and small.low < 0 < small.high
    assert big.delong_p < 0.05 < small.delong_p and big.delong_note == ""  # one seed-matched pair
    assert _row(compare_dirs(a, b5), "pro_mvtec").note.startswith("no interval for this metric")
    res = _cli("--a", a, "--b", b5)
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.strip().startswith("image_auroc"))
    assert "DROP (significant)" in line and "-5.0" in line
    assert "2 significant drop(s)" in res.output and "mvtec/carpet/resnet18" in res.output


def test_fail_on_regression_exit_codes(pair):
    a, b5, b02 = pair
    assert _cli("--a", a, "--b", b5, "--fail-on-regression").exit_code == 1
    assert _cli("--a", a, "--b", b02, "--fail-on-regression").exit_code == 0
    assert _cli("--a", b5, "--b", a, "--fail-on-regression").exit_code == 0  # a significant gain
    assert _cli("--a", a, "--b", b5).exit_code == 0  # without the flag: a report, not a gate


def test_json_rows(pair):
    a, b5, _ = pair
    res = _cli("--a", a, "--b", b5, "--json", "--metric", "image_auroc", "--metric", "image_ap")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["metric"] for r in rows] == ["image_auroc", "image_ap"]
    r = rows[0]
    assert r["regression"] and r["significant"] and r["seeds_a"] == [111] and r["low"] < r["high"] < 0
    assert set(r) >= {"cell", "key", "a", "b", "delta", "low", "high", "delong_p", "resampled", "note"}
    bad = _cli("--a", a, "--b", b5, "--metric", "nope")
    assert bad.exit_code == 2 and "no record has metric(s) nope" in bad.output


def test_refuses_other_data_and_other_images(tmp_path, pair):
    a, _, _ = pair
    other = put(tmp_path / "other", BASE, fingerprint="e" * 64)
    res = _cli("--a", a, "--b", tmp_path / "other")
    assert res.exit_code == 2 and "refusing to compare" in res.output and "different data" in res.output
    assert other.record_path.split("/")[-1] in res.output  # both records named
    assert next((a / "runs").glob("*.json")).name in res.output
    put(tmp_path / "moved", BASE, paths=PATHS[::-1])
    res = _cli("--a", a, "--b", tmp_path / "moved")
    assert res.exit_code == 2 and "different test images" in res.output and "Traceback" not in res.output


def test_records_without_sidecars_show_values_without_interval(tmp_path, pair):
    a, _, _ = pair
    put(tmp_path / "old", degrade(0.05, 0.3), sidecar=False)
    row = _row(compare_dirs(a, tmp_path / "old"))
    assert row.delta == pytest.approx(-0.05, abs=1e-3) and row.low is None and row.note == NO_SIDECAR
    assert row.delong_p < 0.05  # the record's own per-image scores still allow DeLong's test
    res = _cli("--a", a, "--b", tmp_path / "old", "--fail-on-regression")
    assert res.exit_code == 0 and NO_SIDECAR in res.output and "without interval" in res.output


def test_cells_only_on_one_side(tmp_path, pair):
    a, b5, _ = pair
    put(b5, BASE, config=CONFIG.replace(category="grid"))
    rows = compare_dirs(a, b5)
    assert any(r.note == "cell only in B" and "grid" in r.cell for r in rows)
    assert "cell only in B" in _cli("--a", a, "--b", b5).output


def test_seeds_pooled_and_resampled(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for seed, s in ((111, 1), (112, 2)):
        put(a, degrade(0.0, 0.2, seed=s), seed=seed)
    put(b, degrade(0.02, 0.2, seed=3), seed=111)
    put(b, degrade(0.08, 0.2, seed=4), seed=112)  # B's seeds disagree: seed resampling must widen the interval
    row = _row(compare_dirs(a, b))
    assert row.seeds_a == row.seeds_b == [111, 112] and row.resampled == "images, seeds"
    assert row.a == pytest.approx(np.mean([image_auroc(Y, degrade(0.0, 0.2, seed=s)) for s in (1, 2)]))
    assert "largest p of 2 pair(s), seed-matched" == row.delong_note
    # the same draws of images, the seeds' means without resampling the seeds: narrower
    w = resample_weights(Y, 1000, 0)
    sums = {side: [summarize(Y, np.asarray(r.per_image["score"])) for r in recs] for side, recs in
            (("a", _recs(a)), ("b", _recs(b)))}
    mean = {k: np.mean([metric_values(s, w, ["image_auroc"])["image_auroc"] for s in v], 0) for k, v in sums.items()}
    lo, hi = np.quantile(mean["b"] - mean["a"], [0.025, 0.975])
    assert row.high - row.low > hi - lo
    # one seed against two: the seeds of one side only cannot be resampled fairly; images only
    one = diff_interval(sums["a"][:1], sums["b"], "image_auroc")
    assert one[2] == "images"
    assert SUMMARY_NAMES["auroc"] == "image_auroc"  # novelty records' names


def _recs(folder):
    from rdbench.records.store import read_records

    return sorted(read_records(folder), key=lambda r: r.seed)


def test_novelty_names_match_the_engine():
    from rdbench.engine.evaluate import NOVELTY_INTERVALS

    assert all(SUMMARY_NAMES[ours] == theirs for theirs, ours in NOVELTY_INTERVALS.items())


def test_report_compare_to_renders_the_comparison(pair, tmp_path):
    a, b5, _ = pair
    res = runner.invoke(app, ["report", "--results", str(b5), "--compare-to", str(a), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "index.html").read_text()
    section = html.split('id="compare"')[1].split("</section>")[0]
    assert 'href="#compare"' in html and str(a) in section and "mvtec/carpet/resnet18" in section
    assert "2 significant drop(s)" in section and 'class="num drop"' in section and "<script" not in html
    put(tmp_path / "other", BASE, fingerprint="e" * 64)
    res = runner.invoke(app, ["report", "--results", str(tmp_path / "other"), "--compare-to", str(a),
                              "--out", str(tmp_path / "r2")])
    assert res.exit_code == 0 and "Not compared: refusing" in (tmp_path / "r2" / "index.html").read_text()
    res = runner.invoke(app, ["report", "--results", str(b5), "--compare-to", str(tmp_path / "none")])
    assert res.exit_code == 2 and "no results folder" in res.output


def test_pixel_metrics_get_their_interval_from_the_histograms(tmp_path):
    rng = np.random.default_rng(5)
    masks = np.zeros((100, 8, 8), np.uint8)
    masks[Y == 1, 2:5, 2:5] = 1
    for name, shift in (("a", 1.5), ("b", 1.0)):
        maps = rng.normal(0, 1, masks.shape) + shift * masks
        rec = put(tmp_path / name, BASE)
        rec.scores = summarize(Y, BASE, masks, maps)
        values = metric_values(rec.scores, np.ones((1, 100)), ["pixel_auroc"])
        rec.metrics["pixel_auroc"] = float(values["pixel_auroc"][0])
        store_record(rec, tmp_path / name)
    rows = compare_dirs(tmp_path / "a", tmp_path / "b", ["pixel_auroc", "image_auroc"])
    pixel, image = _row(rows, "pixel_auroc"), _row(rows, "image_auroc")
    assert pixel.regression and pixel.delong_p is None  # DeLong: image AUROC only
    assert image.delta == 0 and image.low == image.high == 0 and not image.significant  # the same image scores
