"""rdbench.perf.profile: the documented result on a tiny setting, the options, the bf16 effect; the sampled
peak memory of rdbench.perf.rss against the kernel's high-water mark."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rdbench.perf.profile import FIGURE_KEYS, format_profile, profile
from rdbench.perf.roofline import roofline
from rdbench.records.provenance import bf16_native

pytestmark = pytest.mark.usefixtures("one_thread")


def test_profile_result_has_documented_keys_and_sane_values():
    r = profile("resnet18", image_size=64, batch_size=2, repeats=1, train_epochs=2)
    json.dumps(r)  # serialisable as is (--json)
    assert r["schema"] == "rdbench.profile/1" and r["device"]["type"] == "cpu" and r["device"]["name"]
    settings = r["fast_settings"]
    assert settings["channels_last"] and settings["fold_bn"] and settings["pixel_shuffle"] and settings["prepack"]
    assert r["fast_settings"]["feature_cache"]["active"]
    for side in ("fast", "reference"):
        figures = r[side]
        assert set(figures) == set(FIGURE_KEYS)
        for key, fig in figures.items():
            assert {"value", "unit", "description", "device"} <= set(fig), (side, key)
            assert fig["device"] == r["device"]["name"] and len(fig["description"]) > 20
            assert fig["value"] is not None and fig["value"] > 0, (side, key, fig)
    assert 50 < r["fast"]["peak_memory_mb"]["value"] < 8000
    # the fast path holds fewer parameters (no layer4/fc) and no more than the reference's peak memory
    assert r["fast"]["param_memory_mb"]["value"] < r["reference"]["param_memory_mb"]["value"]
    assert r["fast"]["throughput_ips"]["value"] > 0 and r["reference"]["latency_ms"]["value"] > 0
    assert set(r["ratios"]) >= {"latency_ms", "throughput_ips", "peak_memory_mb", "train_throughput_ips"}
    assert all(v["value"] > 0 for v in r["ratios"].values())
    assert r["agreement"]["max_abs_map_diff"] < 1e-5
    roof = r["roofline"]
    assert set(roof["flops_per_image"]) == {"teacher", "student", "inference", "train_step"}
    assert roof["flops_per_image"]["train_step"] > 2 * roof["flops_per_image"]["student"]  # forward + backward
    calibrated = {"matmul_float32", "conv_float32"} | ({"matmul_bfloat16", "conv_bfloat16"} if bf16_native("cpu")
                                                       else set())  # emulated bf16 is not calibrated
    assert set(roof["calibration_gflops"]) == calibrated
    assert set(roof["figures"]) == {"inference_batch1", "inference_batch", "train"}
    assert all(0 < f["fraction_of_peak"] < 10 for f in roof["figures"].values())
    text = format_profile(r)
    assert "latency_ms" in text and "reference" in text and "of the best float32 calibration" in text


def test_roofline_without_a_calibration_of_the_dtype_has_no_fraction():
    flops = {"teacher": 2e9, "student": 3e9, "inference": 5e9, "train_step": 9e9}
    roof = roofline(flops, {"inference_batch1": 2.0, "inference_batch": 4.0, "train": None},
                    {"matmul_float32": 100.0, "conv_float32": 80.0}, "bfloat16")
    assert roof["peak_gflops"] is None and set(roof["figures"]) == {"inference_batch1", "inference_batch"}
    assert roof["figures"]["inference_batch"]["achieved_gflops"] == pytest.approx(20.0)
    assert all(f["fraction_of_peak"] is None for f in roof["figures"].values())
    f32 = roofline(flops, {"inference_batch": 4.0}, {"matmul_float32": 100.0, "conv_float32": 80.0})
    assert f32["peak_gflops"] == 100.0 and f32["figures"]["inference_batch"]["fraction_of_peak"] == pytest.approx(0.2)


def test_profile_without_reference_train_memory():
    r = profile("resnet18", image_size=64, batch_size=2, repeats=1, reference=False, train=False, memory=False,
                roofline=False)
    assert r["roofline"] is None and r["reference"] is None and r["ratios"] == {} and r["agreement"] is None
    train_fig = r["fast"]["train_throughput_ips"]
    assert train_fig["value"] is None and "train=False" in train_fig["note"]
    assert r["fast"]["latency_ms"]["value"] > 0
    format_profile(r)


def test_profile_reports_amp_effect():
    r = profile("resnet18", image_size=64, batch_size=2, repeats=1, reference=False, train=False, memory=False,
                amp="bf16", roofline=False)
    a = r["amp_effect"]
    assert a["dtype"] == "torch.bfloat16" and 0 <= a["max_abs_map_diff_relative_to_range"] < 0.1
    assert r["fast_settings"]["amp"] == "bf16"


# Runs in a fresh interpreter, so that VmHWM (the process's lifetime peak) is the peak of this allocation:
# nothing before it (interpreter start, imports) comes near base + 200 MB.
_PEAK_WORKER = """
import json, sys, time
from rdbench.perf.rss import RssSampler
sampler = RssSampler().start()
import numpy as np
import torch

def vm_hwm_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))

sampler.reset()
base = sampler.rss_mb()
n = 200 * 2**20
if sys.argv[1] == "numpy":
    buf = np.ones(n // 8)  # every page written, with the GIL held (numpy's fill does not release it)
    time.sleep(0.05)  # like torch's kernels, let the sampler thread run while the buffer is alive
    del buf
else:
    torch.ones(n // 4).sum()  # the buffer lives only inside this expression
print(json.dumps({"base": base, "sampled": sampler.peak_mb(), "hwm": vm_hwm_mb(), "end": sampler.rss_mb()}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_sampled_peak_matches_the_kernels_high_water_mark(kind):
    out = subprocess.run([sys.executable, "-c", _PEAK_WORKER, kind], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.splitlines()[-1])
    assert r["end"] < r["base"] + 100, r  # freed again: only a sampler that ran during it can see the peak
    assert abs(r["sampled"] - r["hwm"]) <= 0.03 * r["hwm"], r
    assert abs((r["sampled"] - r["base"]) - (r["hwm"] - r["base"])) <= 0.05 * 200, r
