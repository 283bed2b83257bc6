"""The main job end to end, as README runs it (slow: about 3 minutes on 2 cores)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rdbench.bench.baseline import check, format_rows
from rdbench.cli.app import app

BASELINES = Path(__file__).resolve().parents[1] / "results" / "baselines"


# demo.json was saved on an AVX512 CPU (the CI machine of its day). On the same kernel ISA a demo is bit for bit
# the same, so the baseline's own rule holds; on another (an AVX2 EPYC gave other float rounding, which 30 epochs
# of training amplify like a seed change: the largest drop was 7.5 points, brick pixel AP) the tolerance is the
# float32 seed spread measured on the demo, max - min of 3 seeds: 9.0 points of image AUROC (README, bf16 figures).
BASELINE_CPU_CAPABILITY = "AVX512"
OTHER_CPU_TOLERANCE = 0.10


def _tolerance_on_this_cpu() -> float | None:
    import torch

    return None if torch.backends.cpu.get_cpu_capability() == BASELINE_CPU_CAPABILITY else OTHER_CPU_TOLERANCE


@pytest.mark.slow
def test_demo_finds_synthetic_defects(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))  # the random-teacher path, as in CI
    t0 = time.perf_counter()
    res = CliRunner().invoke(app, ["demo", "--results", str(tmp_path / "demo"), "--no-progress"])
    seconds = time.perf_counter() - t0
    assert res.exit_code == 0, res.output
    assert "RANDOM TEACHER" in res.output
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "demo" / "runs").glob("*.json"))]
    assert [r["config"]["category"] for r in records] == ["brick", "gravel", "nut"]
    assert all(r["status"] == "ok" and r["teacher_weights"]["kind"] == "random" for r in records)
    mean = {k: sum(r["metrics"][k] for r in records) / 3 for k in records[0]["metrics"]}
    print(f"\ndemo: {seconds:.0f} s, mean metrics {json.dumps({k: round(v, 3) for k, v in mean.items()})}")
    # the expectation for a random teacher: pixel AUROC about 0.9, image AUROC 0.6-0.85
    assert mean["pixel_auroc"] > 0.88 and mean["image_auroc"] > 0.75 and mean["pro_mvtec"] > 0.6
    assert min(r["metrics"]["pixel_auroc"] for r in records) > 0.8
    for line in ("brick", "gravel", "nut", "mean"):
        assert line in res.output
    assert (tmp_path / "demo" / "report" / "index.html").is_file() and "report:" in res.output
    # the demo's profile (fast path vs the authors' procedure) is saved and shown in the report
    assert len(list((tmp_path / "demo" / "profiles").glob("resnet18_128px_*.json"))) == 1
    assert "profile: latency" in res.output
    html = (tmp_path / "demo" / "report" / "index.html").read_text()
    assert "resnet18 128 px, batch 8" in html.split('id="speed"')[1].split("</section>")[0]
    # the committed baseline: a change that silently lowers the demo's accuracy fails here
    rows = check(BASELINES / "demo.json", tmp_path / "demo", tolerance=_tolerance_on_this_cpu())
    print(format_rows(rows))
    assert [r for r in rows if r.status in ("REGRESSION", "MISSING")] == []
