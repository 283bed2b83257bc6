"""tests/benchmarks/gpu_check.py (the prepared GPU measurements) runs end to end: a CPU smoke run at tiny sizes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent / "benchmarks"))
import gpu_check  # noqa: E402


def test_gpu_check_script_smoke_run_on_cpu(tmp_path, capsys):
    threads = torch.get_num_threads()
    try:
        result = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    finally:
        torch.set_num_threads(threads)
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved["category_run"]["status"] == "ok" == result["category_run"]["status"]
    assert saved["category_run"]["timings"]["feature_cache"]["active"]
    assert set(saved["profiles"]) == set(gpu_check.VARIANTS) - set(gpu_check.QUICK_SKIPS)
    for name, r in saved["profiles"].items():
        assert "error" not in r, (name, r)
        assert r["fast"]["throughput_ips"]["value"] > 0
    assert saved["profiles"]["bf16_channels_last"]["fast_settings"]["amp"] == "bf16"
    assert saved["profiles"]["float32"]["ratios"]["latency_ms"]["value"] > 0
    assert "== category run: ok" in capsys.readouterr().out


def test_gpu_check_keeps_the_category_run_when_the_budget_is_spent(tmp_path):
    threads = torch.get_num_threads()
    try:
        result = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path), "--budget-s", "0",
                                 "--variants", "float32,bf16_channels_last"])
    finally:
        torch.set_num_threads(threads)
    assert result["category_run"]["status"] == "ok"
    assert all("budget was spent" in r["error"] for r in result["profiles"].values())
    assert list(result["profiles"]) == ["float32", "bf16_channels_last"]
    with pytest.raises(SystemExit):
        gpu_check.main(["--quick", "--variants", "float64"])
