"""The golden check: float64 runs of the whole pipeline compared stage by stage with results/baselines/golden.json.

Three kinds of test: the comparison's logic on hand-made values (fast); planted changes of 1e-6 that the check must
catch at the right stage, and changes outside the numbers it must not (slow: each runs one or two cases); and the
committed file holding on this CPU under three kernel settings, natively, on one thread and held to AVX2 (slow: the
whole suite three times, in fresh processes, as CI runs it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from rdbench.bench import golden, golden_file
from rdbench.bench.golden import CASES, STAGES
from rdbench.bench.golden_data import write_all
from rdbench.bench.golden_file import DEFAULT_GOLDEN, compare, first_moved, flatten, load, relations
from rdbench.cli.app import app
from rdbench.config import RunConfig

runner = CliRunner()
CASE = {c.name: c for c in CASES}


def _values(**changes) -> dict:
    v = {"data": {"fingerprint": "abc", "train": 4}, "teacher": {"layer1": [0.5, 0.7]},
         "loss": {"step1": 1.25, "step2": 1.0}, "maps": {"image0": [0.1, 0.2, 0.3, 0.05]},
         "pixel_metrics": {"pro_rd4ad": 0.8, "pixel_auroc": 0.9}, "intervals": {"pixel_auroc": [0.85, 0.95]}}
    for path, value in changes.items():
        stage, key = path.split("__")
        v[stage] = {**v[stage], key: value}
    return v


# ----------------------------------------------------------------------------------------------- comparison


def test_flatten_names_every_leaf():
    assert flatten({"a": {"b": [1, [2, 3]]}, "c": None}) == {"a.b[0]": 1, "a.b[1][0]": 2, "a.b[1][1]": 3, "c": None}


def test_equal_values_and_rounding_within_1e_9_pass():
    assert first_moved("x", _values(), _values()) is None
    assert first_moved("x", _values(), _values(loss__step2=1.0 * (1 + 5e-10))) is None
    assert first_moved("x", _values(), _values(loss__step2=1.0 + 1e-13)) is None  # absolute floor near 0 too


def test_the_first_stage_that_moved_is_named_with_old_and_new_values():
    new = _values(loss__step2=1.0 * (1 + 2e-9), pixel_metrics__pro_rd4ad=0.81)
    m = first_moved("case", _values(), new)
    assert (m.stage, m.key, m.old, m.new, m.later) == ("loss", "step2", 1.0, 1.0 * (1 + 2e-9), ["pixel_metrics"])
    text = m.describe()
    assert "stage 'loss'" in text and "step2" in text and "1 ->" in text and "pixel_metrics" in text


def test_data_fingerprint_strings_counts_none_nan_and_missing_keys():
    assert first_moved("x", _values(), _values(data__fingerprint="abd")).stage == "data"
    assert first_moved("x", _values(), _values(data__train=5)).stage == "data"
    assert first_moved("x", _values(pixel_metrics__pro_rd4ad=None), _values(pixel_metrics__pro_rd4ad=None)) is None
    assert first_moved("x", _values(pixel_metrics__pro_rd4ad=float("nan")),
                       _values(pixel_metrics__pro_rd4ad=float("nan"))) is None
    assert first_moved("x", _values(pixel_metrics__pro_rd4ad=0.8), _values(pixel_metrics__pro_rd4ad=None)) is not None
    new = _values()
    new["loss"] = {**new["loss"], "step3": 0.9}  # one more step than the golden run had
    m = first_moved("x", _values(), new)
    assert (m.stage, m.key) == ("loss", "step3") and "absent" in m.describe()


def test_a_case_on_one_side_only_is_a_difference():
    gold = {"a": {"stages": _values()}, "b": {"stages": _values()}}
    moved = compare(gold, {"a": _values(), "c": _values()})
    assert [(m.case, m.stage) for m in moved] == [("b", "case"), ("c", "case")]


def test_relations_hold_cases_that_must_agree():
    same = {name: _values() for name in golden.case_names()}
    assert relations(same) == []
    same["mvtec_resumed"] = _values(loss__step2=1.1)
    [broken] = relations(same)
    assert broken.case == "mvtec_resumed vs mvtec_full" and broken.stage == "loss"


def test_save_keeps_a_history_of_reasons_and_says_what_moved(tmp_path):
    path = tmp_path / "golden.json"
    first = golden.SuiteResult({"mvtec_full": _values()}, {"mvtec_full": 1.0}, 1.0)
    with pytest.raises(golden_file.GoldenFileError, match="reason"):
        golden_file.save(path, first, "  ")
    golden_file.save(path, first, "first values")
    second = golden.SuiteResult({"mvtec_full": _values(loss__step2=0.99)}, {"mvtec_full": 1.0}, 1.0)
    data, moved = golden_file.save(path, second, "lr schedule changed on purpose")
    assert [m.stage for m in moved] == ["loss"]
    saved = load(path)
    assert [h["reason"] for h in saved["history"]] == ["first values", "lr schedule changed on purpose"]
    assert saved["history"][0]["moved"] == "first save" and "stage 'loss'" in saved["history"][1]["moved"][0]
    assert saved["history"][1]["machine"]["kernels"] == torch.backends.cpu.get_cpu_capability()
    assert saved["cases"]["mvtec_full"]["stages"]["loss"]["step2"] == 0.99
    assert saved["cases"]["mvtec_full"]["covers"] == CASE["mvtec_full"].covers


def test_unreadable_or_foreign_golden_files_are_named(tmp_path):
    with pytest.raises(golden_file.GoldenFileError, match="golden save"):
        load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(golden_file.GoldenFileError, match="not a readable golden file"):
        load(bad)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"cells": {}}))
    res = runner.invoke(app, ["golden", "check", "--golden", str(other)])
    assert res.exit_code == 2 and "not a golden file" in res.output
    res = runner.invoke(app, ["golden", "save", "--out", str(other), "--reason", "x"])
    assert res.exit_code == 2 and json.loads(other.read_text()) == {"cells": {}}  # not overwritten


def test_the_committed_golden_file_covers_the_suite():
    saved = load(DEFAULT_GOLDEN)
    assert list(saved["cases"]) == golden.case_names()
    assert saved["stages"] == list(STAGES) and saved["tolerance"] == {"rel": 1e-9, "abs": 1e-12}
    assert all(h["reason"].strip() for h in saved["history"])
    for name, case in saved["cases"].items():  # every stage recorded something, bar the curve where none is run
        empty = [s for s in STAGES if not case["stages"][s]]  # novelty runs have no masks, so no pixel metrics
        allowed = {"curve"} | ({"layers", "pixel_metrics"} if CASE[name].protocol != "mvtec" else set())
        assert set(empty) <= allowed, (name, empty)


# --------------------------------------------------------------------------------------------- float64 path


def test_dtype_is_a_result_setting_left_out_at_its_default():
    base = RunConfig()
    assert "dtype" not in base.to_dict() and "dtype" not in base.result_dict()
    f64 = base.replace(dtype="float64")
    assert f64.hash() != base.hash() and f64.to_dict()["dtype"] == "float64"
    assert RunConfig.from_dict(f64.to_dict()) == f64
    with pytest.raises(ValueError, match="dtype"):
        RunConfig(dtype="float16")
    with pytest.raises(ValueError, match="excludes amp"):
        RunConfig(dtype="float64", amp="bf16")


def test_float64_inference_copy_equals_the_plain_model_to_float64_rounding():
    from rdbench.engine.evaluate import predict_maps
    from rdbench.engine.inference import fast_predict, prepare_for_inference
    from rdbench.models.rd import build_rd_model

    torch.manual_seed(0)
    model = build_rd_model("resnet18", "none").double().eval()
    x = torch.randn(2, 3, 64, 64)
    plain = predict_maps(model, x.double(), (1, 2, 3), 4.0)
    copy = prepare_for_inference(model, "cpu")
    assert copy.rdbench_dtype == torch.float64 and not copy.rdbench_prepacked  # oneDNN has no float64 kernels
    fast = fast_predict(copy, x, (1, 2, 3), 4.0)  # float32 images in: cast to the model's dtype
    assert fast.dtype == torch.float64
    assert torch.allclose(fast, plain, rtol=1e-12, atol=1e-13)  # the float32 copy agrees to ~1e-6 only


# ------------------------------------------------------------------------------------ planted changes (slow)


@pytest.fixture(scope="module")
def suite_data(tmp_path_factory):
    return write_all(tmp_path_factory.mktemp("golden-data"))


def _moved(name: str, suite_data, tmp_path) -> golden_file.Moved | None:
    fresh = golden.run_case(CASE[name], suite_data, tmp_path / name)
    return first_moved(name, load(DEFAULT_GOLDEN)["cases"][name]["stages"], fresh)


@pytest.mark.slow
def test_unchanged_code_reproduces_the_committed_values(suite_data, tmp_path):
    assert _moved("texture_pre_pixel", suite_data, tmp_path) is None


@pytest.mark.slow
def test_gaussian_sigma_moved_by_1e_6_is_caught_at_the_maps(suite_data, tmp_path, monkeypatch):
    from rdbench.engine import scoring

    kernel = scoring._gaussian_kernel
    monkeypatch.setattr(scoring, "_gaussian_kernel", lambda sigma, *a: kernel(sigma * (1 + 1e-6), *a))
    scoring._blur_matrix.cache_clear()
    try:
        m = _moved("texture_pre_pixel", suite_data, tmp_path)
    finally:
        scoring._blur_matrix.cache_clear()
    assert m is not None and m.stage == "maps", m and m.describe()


@pytest.mark.slow
def test_adam_lr_moved_by_1e_6_is_caught_at_the_loss_of_step_2(suite_data, tmp_path, monkeypatch):
    from rdbench.engine import train

    adam = train.adam
    monkeypatch.setattr(train, "adam", lambda params, lr, *a, **k: adam(params, lr * (1 + 1e-6), *a, **k))
    m = _moved("texture_pre_pixel", suite_data, tmp_path)
    assert m is not None and (m.stage, m.key) == ("loss", "step2"), m and m.describe()


@pytest.mark.slow
def test_mask_threshold_is_caught_where_a_mask_pixel_lies_between(suite_data, tmp_path, monkeypatch):
    """rdbench's masks are 8-bit before they are thresholded, so the mask values nearest the threshold are 127/255
    and 128/255 (0.50196): 0.5 + 1e-6 cuts exactly the same pixels and no number moves (a check that failed there
    would be failing on nothing). The case built so that the threshold matters: the suite's masks are drawn at
    96 px and resized to 64 (bilinear, as MVTec AD's are), which leaves grey edge pixels; a threshold moved up to
    the lowest grey value above 0.5 found there cuts those pixels, and is caught at the pixel metrics."""
    from rdbench.data import transforms
    from rdbench.data.mvtec import MVTecTest

    test_set = MVTecTest(str(suite_data["synthetic"]), "brick", 64)
    grey = np.concatenate([np.asarray(Image.open(s.mask_path).convert("L").resize((64, 64), Image.BILINEAR)).ravel()
                           for s in test_set.samples if s.mask_path is not None])
    edge = grey[(grey > 127.5) & (grey < 255)]
    assert edge.size, "the premise: resized masks hold grey pixels above the threshold"
    monkeypatch.setattr(transforms, "MASK_THRESHOLD", 0.5 + 1e-6)
    assert _moved("texture_pre_pixel", suite_data, tmp_path / "a") is None
    monkeypatch.setattr(transforms, "MASK_THRESHOLD", float(np.float32(edge.min()) / np.float32(255.0)))
    m = _moved("texture_pre_pixel", suite_data, tmp_path / "b")
    assert m is not None and m.stage == "pixel_metrics", m and m.describe()


@pytest.mark.slow
def test_201_pro_thresholds_are_caught_at_pro_rd4ad(suite_data, tmp_path, monkeypatch):
    from rdbench.metrics import pro

    monkeypatch.setattr(pro, "RD4AD_NUM_THRESHOLDS", 201)
    m = _moved("texture_pre_pixel", suite_data, tmp_path)
    assert m is not None and (m.stage, m.key) == ("pixel_metrics", "pro_rd4ad"), m and m.describe()


@pytest.mark.slow
def test_the_image_score_definition_is_caught_at_the_image_metrics(suite_data, tmp_path, monkeypatch):
    """The project's image score is the max of the smoothed map (the authors'); the mean of the top 1% of pixels
    is the usual alternative."""
    from rdbench.engine import evaluate

    def top_mean(maps):
        flat = maps.flatten(1)
        return flat.topk(max(1, flat.shape[1] // 100), dim=1).values.mean(dim=1)

    monkeypatch.setattr(evaluate, "image_scores", top_mean)
    m = _moved("texture_pre_pixel", suite_data, tmp_path)
    assert m is not None and m.stage == "image_metrics", m and m.describe()


@pytest.mark.slow
def test_report_and_cli_changes_do_not_fail_the_check(tmp_path, monkeypatch):
    """The suite never reaches the report or the commands' formatting: breaking both leaves it passing. One case
    (the others run the same way) through the real command."""
    from rdbench.cli import results
    from rdbench.report import render

    def broken(*a, **k):
        raise AssertionError("report code ran")

    monkeypatch.setattr(render, "render_report", broken)
    monkeypatch.setattr(results, "report", broken)
    gold = load(DEFAULT_GOLDEN)
    one = {**gold, "cases": {"caltech256_split": gold["cases"]["caltech256_split"]}}
    (tmp_path / "g.json").write_text(json.dumps(one))
    monkeypatch.setattr(golden, "CASES", tuple(c for c in CASES if c.name == "caltech256_split"))
    res = runner.invoke(app, ["golden", "check", "--golden", str(tmp_path / "g.json"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["ok"] is True


# -------------------------------------------------------------------------- the committed file, as CI runs it


KERNELS = {"native": {}, "one thread": {"OMP_NUM_THREADS": "1"},
           "AVX2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}


@pytest.mark.slow
@pytest.mark.parametrize("setting", list(KERNELS))
def test_golden_check_passes_under_each_kernel_setting(setting):
    env = {**os.environ, **KERNELS[setting]}
    res = subprocess.run([sys.executable, "-m", "rdbench", "golden", "check", "--json"], env=env,
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]
    out = json.loads(res.stdout)
    assert out["ok"] and set(out["seconds"]) == set(golden.case_names())
    print(f"golden check, {setting}: {out['total_s']:.1f} s on {out['machine']}")
