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
    """Over the test images; with one seed per side that is no verdict (training randomness is left out)."""
    a, b5, b02 = pair
    big, small = _row(compare_dirs(a, b5)), _row(compare_dirs(a, b02))
    assert big.delta == pytest.approx(-0.05, abs=1e-3) and small.delta == pytest.approx(-0.002, abs=1e-3)
    assert big.significant and big.regression and big.high < 0 and big.resampled == "images"
    assert not small.significant and small.low < 0 < small.high
    assert big.verdict == small.verdict == "inconclusive: one seed per side" and not big.seed_variance
    assert big.delong_p < 0.05 < small.delong_p and big.delong_note == ""  # one seed-matched pair
    assert _row(compare_dirs(a, b5), "pro_mvtec").note.startswith("no interval for this metric")
    res = _cli("--a", a, "--b", b5)
    assert res.exit_code == 0, res.output
    line = next(x for x in res.output.splitlines() if x.strip().startswith("image_auroc"))
    assert "inconclusive: one seed per side; interval: test images only" in line and "-5.0" in line
    assert "DROP" not in res.output and "0 significant drop(s)" in res.output and "2 inconclusive" in res.output
    assert "mvtec/carpet/resnet18" in res.output and "interval over test images only" in res.output


def test_fail_on_regression_needs_min_seeds_per_side(pair):
    a, b5, b02 = pair
    res = _cli("--a", a, "--b", b5, "--fail-on-regression")  # one seed per side: not judged
    assert res.exit_code == 0, res.output
    assert ("cannot judge: mvtec/carpet/resnet18 (256px 5ep pre+oce+mff L1,2,3 weights=imagenet) has 1 seed in A, "
            "1 in B; --fail-on-regression needs >= 3 per side (--min-seeds)") in res.output
    one = ("--fail-on-regression", "--min-seeds", "1")  # judge on what there is: the images-only interval
    res = _cli("--a", a, "--b", b5, *one)
    assert res.exit_code == 1 and "over the test images alone (--min-seeds 1)" in res.output, res.output
    assert _cli("--a", a, "--b", b02, *one).exit_code == 0
    assert _cli("--a", b5, "--b", a, *one).exit_code == 0  # a significant gain
    assert _cli("--a", a, "--b", b5).exit_code == 0  # without the flag: a report, not a gate
    assert _cli("--a", a, "--b", b5, "--min-seeds", "0").exit_code == 2


def test_json_rows(pair):
    a, b5, _ = pair
    res = _cli("--a", a, "--b", b5, "--json", "--metric", "image_auroc", "--metric", "image_ap")
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["metric"] for r in rows] == ["image_auroc", "image_ap"]
    r = rows[0]
    assert r["regression"] and r["significant"] and r["seeds_a"] == [111] and r["low"] < r["high"] < 0
    assert r["verdict"] == "inconclusive: one seed per side" and r["seed_variance"] is False
    assert r["interval"] == "test images only"
    assert set(r) >= {"cell", "key", "a", "b", "delta", "low", "high", "delong_p", "resampled", "note"}
    bad = _cli("--a", a, "--b", b5, "--metric", "nope")
    assert bad.exit_code == 2 and "no record has metric(s) nope" in bad.output


def _seeds(results, drop: float, first: int, n: int = 3, noise: float = 0.3):
    """n seeds (111...) of one cell, each BASE with its own noise, anomalous images shifted down by ``drop``; every
    record's metrics computed from the scores its sidecar keeps."""
    for i in range(n):
        put(results, degrade(drop, noise, seed=first + i), seed=111 + i)


@pytest.fixture
def seeded(tmp_path):
    """A: 3 seeds; B_drop: 3 seeds, 8 points lower; B_same: 3 other seeds of the same model; B_one: 1 seed, lower."""
    a, drop, same, one = (tmp_path / "seeded" / n for n in ("a", "b_drop", "b_same", "b_one"))
    _seeds(a, 0.0, 1)
    _seeds(drop, 0.08, 11)
    _seeds(same, 0.0, 21)
    _seeds(one, 0.08, 31, n=1)
    return a, drop, same, one


def test_three_seeds_a_side_judge_a_drop_and_no_change(seeded):
    a, drop, same, _ = seeded
    row = _row(compare_dirs(a, drop))
    assert row.seeds_a == row.seeds_b == [111, 112, 113] and row.seed_variance and row.interval == \
        "seeds and test images"
    assert row.regression and row.verdict == "DROP (significant)"
    res = _cli("--a", a, "--b", drop, "--fail-on-regression")
    assert res.exit_code == 1 and "DROP (significant)" in res.output and "cannot judge" not in res.output, res.output
    assert "interval over seeds and test images" in res.output
    row = _row(compare_dirs(a, same))
    assert row.low < 0 < row.high and row.verdict == "not significant"
    res = _cli("--a", a, "--b", same, "--fail-on-regression")
    assert res.exit_code == 0 and "not significant" in res.output, res.output
    assert "0 significant drop(s), 0 significant gain(s), 2 not significant, 0 inconclusive" in res.output


def test_one_seed_against_three_says_which_side(seeded):
    a, _, _, one = seeded
    row = _row(compare_dirs(a, one))
    assert row.verdict == "inconclusive: one seed in B (3 in A)" and row.resampled == "images"
    assert _row(compare_dirs(one, a)).verdict == "inconclusive: one seed in A (3 in B)"
    res = _cli("--a", a, "--b", one, "--fail-on-regression")
    assert res.exit_code == 0 and "has 3 seeds in A, 1 in B" in res.output, res.output


def test_two_seeds_a_side_give_a_verdict_but_the_gate_wants_min_seeds(tmp_path):
    _seeds(tmp_path / "a", 0.0, 1, n=2)
    _seeds(tmp_path / "b", 0.08, 11, n=2)
    row = _row(compare_dirs(tmp_path / "a", tmp_path / "b"))
    assert row.seed_variance and row.verdict == "DROP (significant)"
    res = _cli("--a", tmp_path / "a", "--b", tmp_path / "b", "--fail-on-regression")
    assert res.exit_code == 0 and "has 2 seeds in A, 2 in B" in res.output, res.output
    res = _cli("--a", tmp_path / "a", "--b", tmp_path / "b", "--fail-on-regression", "--min-seeds", "2")
    assert res.exit_code == 1, res.output


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


def test_the_hierarchical_interval_is_the_images_one_when_seeds_agree_and_wider_when_they_differ():
    from rdbench.bench.intervals import mean_interval

    a = summarize(Y, BASE)
    b = summarize(Y, degrade(0.03, 0.3, seed=2))
    images = diff_interval([a], [b], "image_auroc")
    # three identical runs a side: whatever seeds are drawn, every draw is the one-seed draw
    low, high, over = diff_interval([a] * 3, [b] * 3, "image_auroc")
    assert (low, high) == pytest.approx(images[:2], abs=1e-12) and over == "images, seeds"  # the mean's rounding
    assert mean_interval([a] * 3, "image_auroc")[:2] == pytest.approx(mean_interval([a], "image_auroc")[:2])
    spread = [summarize(Y, degrade(d, 0.3, seed=5 + i)) for i, d in enumerate((0.0, 0.03, 0.06))]
    wide = diff_interval([a] * 3, spread, "image_auroc")
    narrow = np.quantile(np.mean([_draws(s) for s in spread], 0) - _draws(a), [0.025, 0.975])
    assert wide[1] - wide[0] > 1.5 * (narrow[1] - narrow[0])  # the seeds' 3-point spread is in it
    lo, hi, over = mean_interval(spread, "image_auroc")
    assert over == "images, seeds" and lo < np.mean([image_auroc(Y, degrade(d, 0.3, seed=5 + i)) for i, d in
                                                     enumerate((0.0, 0.03, 0.06))]) < hi
    with pytest.raises(ValueError, match="same test images"):
        diff_interval([a], [summarize(Y[::-1], BASE)], "image_auroc")


def _draws(s):
    return metric_values(s, resample_weights(Y, 1000, 0), ["image_auroc"])["image_auroc"]


def _recs(folder):
    from rdbench.records.store import read_records

    return sorted(read_records(folder), key=lambda r: r.seed)


def test_novelty_names_match_the_engine():
    from rdbench.engine.evaluate import NOVELTY_INTERVALS

    assert all(SUMMARY_NAMES[ours] == theirs for theirs, ours in NOVELTY_INTERVALS.items())


def test_report_compare_to_renders_the_comparison(pair, seeded, tmp_path):
    a, b5, _ = pair
    res = runner.invoke(app, ["report", "--results", str(b5), "--compare-to", str(a), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    html = (tmp_path / "r" / "index.html").read_text()
    section = html.split('id="compare"')[1].split("</section>")[0]
    assert 'href="#compare"' in html and str(a) in section and "mvtec/carpet/resnet18" in section
    assert "0 significant drop(s)" in section and "2 inconclusive" in section and "<script" not in html
    assert "inconclusive: one seed per side" in section and "(test images only)" in section
    assert 'class="num drop"' not in section  # one seed a side: never coloured as a verdict
    three_a, three_drop, _, _ = seeded
    res = runner.invoke(app, ["report", "--results", str(three_drop), "--compare-to", str(three_a),
                              "--out", str(tmp_path / "r3")])
    section = (tmp_path / "r3" / "index.html").read_text().split('id="compare"')[1].split("</section>")[0]
    assert "2 significant drop(s)" in section and 'class="num drop"' in section, res.output
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
