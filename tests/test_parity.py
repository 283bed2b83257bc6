"""Parity with the authors' code: fingerprints measured on hq-deng/RD4AD (tests/data; docs/parity.md says how)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rdbench.perf.parity import CHAOTIC_STEP_REL, compare, fingerprint

OFFICIAL = {r["backbone"]: r for r in json.loads((Path(__file__).parent / "data" /
                                                  "official_fingerprints.json").read_text())}


@pytest.fixture(scope="module", params=sorted(OFFICIAL))
def pair(request):
    return fingerprint(request.param), OFFICIAL[request.param]


def test_fingerprint_matches_official(pair):
    ours, official = pair
    bad = compare(ours, official)  # the stated tolerances; training steps 2-3: CHAOTIC_STEP_REL
    assert bad == [], "\n".join(bad)


def test_first_training_step_exact_and_later_steps_close(pair):
    ours, official = pair
    got, want = ours["train_losses_3_steps"], official["train_losses_3_steps"]
    assert got[0] == pytest.approx(want[0], rel=1e-5)  # same forward in train mode: no chaos yet
    assert got[1:] == pytest.approx(want[1:], rel=CHAOTIC_STEP_REL)


def test_param_counts_match_implementation_facts(pair):
    # the authors' parameter counts: trainable parameters incl. the unused conv4/bn4
    facts = {"resnet18": 15_908_480, "resnet34": 22_696_576, "resnet50": 55_044_096,
             "wide_resnet50_2": 92_195_328}
    ours, _ = pair
    assert ours["ocbe_param_count"] + ours["decoder_param_count"] == facts[ours["backbone"]]


def test_compare_detects_a_changed_value():
    official = OFFICIAL["resnet18"]
    doctored = json.loads(json.dumps(official))
    doctored["eval_map0_smoothed"][0] *= 1.001
    doctored["ocbe_params"][0][2] += 0.01
    doctored["train_losses_3_steps"][0] *= 1.001
    bad = compare(doctored, official)
    assert any(m.startswith("eval_map0_smoothed") for m in bad)
    assert any("bn_layer.0.conv1.weight" in m for m in bad)
    assert any(m.startswith("train_losses_3_steps[0]") for m in bad)
    assert compare(official, official) == []


def test_fingerprint_other_seed_and_shape_changes_numbers():
    a = fingerprint("resnet18", seed=5, input_shape=(1, 3, 64, 96), input_seed=3, train_steps=1)
    b = fingerprint("resnet18", seed=5, input_shape=(1, 3, 64, 96), input_seed=3, train_steps=1)
    c = fingerprint("resnet18", seed=6, input_shape=(1, 3, 64, 96), input_seed=3, train_steps=1)
    assert a["eval_loss"] == b["eval_loss"] and a["ocbe_used_sum"] == b["ocbe_used_sum"]  # repeatable
    assert c["ocbe_used_sum"] != a["ocbe_used_sum"]
    assert a["input_shape"] == [1, 3, 64, 96]


# --- float64: the authors' code measured with model and input cast to float64 after a float32 build ----------
OFFICIAL64 = {r["backbone"]: r for r in json.loads((Path(__file__).parent / "data" /
                                                    "official_fingerprints_float64.json").read_text())}


@pytest.mark.parametrize("backbone", [pytest.param(b, marks=pytest.mark.slow) if b == "wide_resnet50_2" else b
                                      for b in sorted(OFFICIAL64)])
def test_float64_fingerprint_matches_official_to_1e9_steps_included(backbone):
    ours, official = fingerprint(backbone, dtype="float64"), OFFICIAL64[backbone]
    assert official["dtype"] == ours["dtype"] == "float64"
    assert compare(ours, official) == []  # every field to 1e-9 relative, the three Adam steps included
    got, want = ours["train_losses_3_steps"], official["train_losses_3_steps"]
    assert got == pytest.approx(want, rel=1e-9, abs=0)


def test_float64_compare_is_strict_and_refuses_another_dtype():
    official = OFFICIAL64["resnet18"]
    near = {**official, "train_losses_3_steps": [v * (1 + 1e-8) for v in official["train_losses_3_steps"]]}
    assert any("train_losses_3_steps" in m for m in compare(near, official))  # 1e-8 off is a mismatch
    assert compare({**official, "dtype": "float32"}, official) == ["dtype: float32 != official float64"]
