"""A record and its scores sidecar belong together: the digest the store writes, and compare, baseline save /
check (both modes) and the report refusing a pair that disagrees (exit 2, naming both files), on the doctored
records of test_compare (100 test images, sidecars written by the record store)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
from test_compare import BASE, Y, degrade, put
from typer.testing import CliRunner

from rdbench.bench.baseline import save_baseline
from rdbench.bench.sidecars import SidecarMismatch, disagreements
from rdbench.cli.app import app
from rdbench.metrics import image_auroc, pixel_ap_f1_max, pixel_auroc, summarize
from rdbench.report import render_report

runner = CliRunner()


def _cli(*args):
    return runner.invoke(app, [*map(str, args)])


def _json(results):
    return next((results / "runs").glob("*.json"))


def _edit(path, **changes):
    d = json.loads(path.read_text())
    for key, fn in changes.items():
        d[key] = fn(d[key])
    path.write_text(json.dumps(d, indent=1))


def _lower(d):
    """The -60-point edit: image AUROC and the anomalous images' scores lowered in the JSON, the sidecar left."""
    return {**d, "image_auroc": d["image_auroc"] - 0.60}


def _lower_scores(p):
    return {**p, "score": [s - 3.0 * y for s, y in zip(p["score"], p["label"])]}


@pytest.fixture
def doctored(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    put(a, BASE)
    put(b, BASE)
    _edit(_json(b), metrics=_lower, per_image=_lower_scores)
    return a, b


def test_the_written_digest_is_the_sidecars_sha256(tmp_path):
    rec = put(tmp_path, BASE)
    side = tmp_path / "runs" / rec.scores_file
    digest = hashlib.sha256(side.read_bytes()).hexdigest()
    assert rec.scores_sha256 == digest and json.loads(_json(tmp_path).read_text())["scores_sha256"] == digest
    umask = os.umask(0)
    os.umask(umask)
    assert side.stat().st_mode & 0o777 == 0o666 & ~umask  # shared like the record
    assert sorted(p.name for p in side.parent.iterdir()) == sorted([side.name, _json(tmp_path).name])  # no temp


def test_the_sixty_point_edit_is_an_error_naming_both_files_not_a_verdict(doctored):
    a, b = doctored
    auroc = image_auroc(Y, BASE)
    for extra in ((), ("--fail-on-regression",), ("--json",)):
        res = _cli("compare", "--a", a, "--b", b, *extra)
        assert res.exit_code == 2, res.output
        assert f"{_json(b)} and {_json(b).with_name(_json(b).stem + '.scores.npz')} disagree" in res.output
        assert f"image_auroc {auroc - 0.6:.4f} in the record, {auroc:.4f} from the sidecar" in res.output
        assert "image scores: 50 of 100 differ" in res.output
        assert "not significant" not in res.output and "Traceback" not in res.output
    _edit(_json(b), per_image=lambda p: {**p, "score": [float(s) for s in BASE]})  # the metric alone edited
    res = _cli("compare", "--a", a, "--b", b)
    assert res.exit_code == 2 and "image_auroc" in res.output and "image scores" not in res.output


def test_a_sidecar_replaced_by_another_runs_is_refused_by_its_digest(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    put(a, BASE)
    one, other = put(b, BASE, seed=111), put(b, degrade(0.0, 0.3, seed=4), seed=112)
    shutil.copyfile(b / "runs" / other.scores_file, b / "runs" / one.scores_file)
    res = _cli("compare", "--a", a, "--b", b)
    assert res.exit_code == 2 and "sha256 of the sidecar is" in res.output and one.scores_file in res.output
    assert f"the record says {one.scores_sha256[:16]}" in res.output


def test_an_old_record_without_a_digest_still_compares_and_says_so(tmp_path, doctored):
    a, _ = doctored
    old = tmp_path / "old"
    put(old, degrade(0.05, 0.3))
    _edit(_json(old), scores_sha256=lambda _: None)
    res = _cli("compare", "--a", a, "--b", old)
    assert res.exit_code == 0, res.output
    assert "note: 1 record(s) do not record their sidecar's sha256 (written by an older rdbench)" in res.output
    assert _json(old).name in res.output
    _edit(_json(old), metrics=_lower)  # without a digest the metrics are still checked
    assert _cli("compare", "--a", a, "--b", old).exit_code == 2


def test_labels_that_differ_are_named(tmp_path):
    put(tmp_path, BASE)
    _edit(_json(tmp_path), per_image=lambda p: {**p, "label": [1 - y for y in p["label"][:2]] + p["label"][2:]})
    res = _cli("compare", "--a", tmp_path, "--b", tmp_path)
    assert res.exit_code == 2 and "labels: 2 of 100 differ" in res.output


def test_exact_pixel_metrics_agree_with_their_binned_sidecar():
    """What a real run writes (exact metrics, binned sidecar) must pass; an edit beyond the binning error not."""
    rng = np.random.default_rng(3)
    masks = np.zeros((100, 16, 16), np.uint8)
    masks[Y == 1, 4:9, 3:8] = 1
    maps = (rng.normal(0, 1, masks.shape) + 1.2 * masks).astype(np.float32)
    s = summarize(Y, BASE, masks, maps)
    ap, f1 = pixel_ap_f1_max(masks, maps)
    exact = {"image_auroc": image_auroc(Y, BASE), "pixel_auroc": pixel_auroc(masks, maps), "pixel_ap": ap,
             "pixel_f1_max": f1, "pro_mvtec": 0.5}
    assert disagreements(s, exact, Y.tolist(), [float(v) for v in BASE]) == []
    found = disagreements(s, {**exact, "pixel_ap": ap - 0.01, "image_auroc": exact["image_auroc"] + 1e-9})
    assert [f.split(" ")[0] for f in found] == ["image_auroc", "pixel_ap"]


def test_baseline_save_and_check_refuse_a_pair_that_disagrees(tmp_path, doctored):
    a, b = doctored
    res = _cli("baseline", "save", "--results", b, "--out", tmp_path / "bad.json")
    assert res.exit_code == 2 and "disagree" in res.output and not (tmp_path / "bad.json").exists()
    save_baseline(a, tmp_path / "b.json")
    for extra in ((), ("--stat",)):
        res = _cli("baseline", "check", "--baseline", tmp_path / "b.json", "--results", b, *extra)
        assert res.exit_code == 2 and f"{_json(b)} and" in res.output and "0.8916 from the sidecar" in res.output
        assert "REGRESSION" not in res.output


def test_a_baseline_keeps_and_checks_the_digests_of_its_sidecars(tmp_path):
    put(tmp_path / "base", BASE)
    put(tmp_path / "base", degrade(0.0, 0.3, seed=4), seed=112)
    put(tmp_path / "fresh", BASE)
    cell = next(iter(save_baseline(tmp_path / "base", tmp_path / "b.json")["cells"].values()))
    assert {seed: hashlib.sha256((tmp_path / rel).read_bytes()).hexdigest() for seed, rel in cell["scores"].items()
            } == cell["scores_sha256"]
    args = ("baseline", "check", "--baseline", tmp_path / "b.json", "--results", tmp_path / "fresh")
    assert _cli(*args).exit_code == 0 and _cli(*args, "--stat").exit_code == 0
    kept = tmp_path / cell["scores"]["111"]
    shutil.copyfile(tmp_path / cell["scores"]["112"], kept)
    for extra in ((), ("--stat",)):
        res = _cli(*args, *extra)
        assert res.exit_code == 2 and f"its kept sidecar {kept}" in res.output and "seed 111" in res.output
    shutil.copyfile(tmp_path / "base" / "runs" / f"{_json(tmp_path / 'fresh').stem}.scores.npz", kept)
    _edit(tmp_path / "b.json", cells=lambda cells: {k: {**c, "scores_sha256": {}} for k, c in cells.items()})
    res = _cli(*args, "--stat")  # a baseline saved before the digests: checked without them, and said so
    assert res.exit_code == 0 and "keeps no sha256 of 2 scores sidecar(s)" in res.output, res.output


def test_the_report_refuses_a_pair_that_disagrees(tmp_path, doctored):
    a, b = doctored
    res = _cli("report", "--results", b, "--out", tmp_path / "r")
    assert res.exit_code == 2 and "no report:" in res.output and "disagree" in res.output, res.output
    assert not (tmp_path / "r" / "index.html").exists()
    with pytest.raises(SidecarMismatch, match="image_auroc"):
        render_report(b, tmp_path / "r")
    res = _cli("report", "--results", a, "--compare-to", b, "--out", tmp_path / "r")  # as the comparison's A
    assert res.exit_code == 2 and "disagree" in res.output
    _edit(_json(a), scores_sha256=lambda _: None)
    html = render_report(a, tmp_path / "r").read_text()
    assert "do not record their sidecar&#39;s sha256" in html
