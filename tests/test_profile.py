"""rdbench.profile: the documented result on a tiny setting, the inference preparation, the bf16 option."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rdbench.evaluate import predict_maps
from rdbench.models.rd import build_rd_model
from rdbench.profile import (
    FIGURE_KEYS,
    PackedConv2d,
    PixelShuffleDeconv,
    fast_predict,
    fold_batchnorm,
    format_profile,
    prepare_for_inference,
    profile,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # See tests/test_reference.py: one intra-op thread keeps shared, oversubscribed CPUs from stalling.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_rd_model("resnet18", "none").eval()


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
    text = format_profile(r)
    assert "latency_ms" in text and "reference" in text


def test_profile_without_reference_train_memory():
    r = profile("resnet18", image_size=64, batch_size=2, repeats=1, reference=False, train=False, memory=False)
    assert r["reference"] is None and r["ratios"] == {} and r["agreement"] is None
    train_fig = r["fast"]["train_throughput_ips"]
    assert train_fig["value"] is None and "train=False" in train_fig["note"]
    assert r["fast"]["latency_ms"]["value"] > 0
    format_profile(r)


def test_prepare_for_inference_works_on_a_copy(model):
    prepared = prepare_for_inference(model, "cpu")
    kinds = {type(m) for m in prepared.modules()}
    assert nn.BatchNorm2d not in kinds and nn.ConvTranspose2d not in kinds and nn.Conv2d not in kinds
    assert PackedConv2d in kinds and PixelShuffleDeconv in kinds and prepared.rdbench_prepacked
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    x = torch.randn(3, 3, 64, 64)
    expected = predict_maps(model, x, (1, 2, 3), 4.0)
    assert (fast_predict(prepared, x) - expected).abs().max() < 1e-5
    assert (fast_predict(prepared, x[:1]) - expected[:1]).abs().max() < 1e-5  # other shapes after packing
    plain = prepare_for_inference(model, "cpu", channels_last=False, fold_bn=False, pixel_shuffle=False)
    assert not plain.rdbench_prepacked and torch.equal(fast_predict(plain, x), expected)
    unpacked = prepare_for_inference(model, "cpu", prepack=False)
    assert unpacked.decoder.layer1[0].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(ValueError, match="prepack"):
        prepare_for_inference(model, "cpu", channels_last=False, prepack=True)


def test_packed_convolution_and_pixel_shuffle_deconv_equal_the_originals():
    torch.manual_seed(1)
    x = torch.randn(2, 16, 9, 7).contiguous(memory_format=torch.channels_last)
    for conv in (nn.Conv2d(16, 24, 3, stride=2, padding=1), nn.Conv2d(16, 8, 1, bias=False)):
        conv = conv.eval().to(memory_format=torch.channels_last)
        packed = PackedConv2d(conv)
        with torch.inference_mode():
            assert (packed(x) - conv(x)).abs().max() < 1e-5
            assert (packed(x[:1]) - conv(x[:1])).abs().max() < 1e-5
    deconv = nn.ConvTranspose2d(16, 8, 2, stride=2, bias=True)
    with torch.no_grad():
        assert (PixelShuffleDeconv(deconv)(x) - deconv(x)).abs().max() < 1e-5


def test_fold_batchnorm_counts():
    torch.manual_seed(0)
    m = build_rd_model("resnet18", "none").eval()
    n_bn = sum(isinstance(x, nn.BatchNorm2d) for x in m.modules())
    assert fold_batchnorm(m) == n_bn  # every batch norm of the model follows a convolution


def test_bf16_autocast_runs_in_bfloat16_and_stays_close(model):
    with pytest.raises(ValueError, match="prepack=False"):
        fast_predict(prepare_for_inference(model, "cpu"), torch.randn(1, 3, 64, 64), amp="bf16")
    prepared = prepare_for_inference(model, "cpu", prepack=False)
    seen = []
    hook = prepared.teacher.layer3.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    hook2 = prepared.decoder.register_forward_hook(lambda mod, inp, out: seen.append(out[0].dtype))
    x = torch.randn(2, 3, 64, 64)
    low = fast_predict(prepared, x, amp="bf16")
    hook.remove()
    hook2.remove()
    assert seen == [torch.bfloat16, torch.bfloat16]
    ref = fast_predict(prepared, x)
    assert low.dtype == torch.float32
    span = float(ref.max() - ref.min())
    assert (low - ref).abs().max() < 0.1 * span  # bf16 keeps 8 bits of mantissa: close, not equal
    assert torch.corrcoef(torch.stack([low.flatten(), ref.flatten()]))[0, 1] > 0.95
    with pytest.raises(ValueError, match="fp16"):
        fast_predict(prepared, x, amp="fp16")
    with pytest.raises(ValueError, match="unknown amp"):
        fast_predict(prepared, x, amp="int8")


def test_profile_reports_amp_effect():
    r = profile("resnet18", image_size=64, batch_size=2, repeats=1, reference=False, train=False, memory=False,
                amp="bf16")
    a = r["amp_effect"]
    assert a["dtype"] == "torch.bfloat16" and 0 <= a["max_abs_map_diff_relative_to_range"] < 0.1
    assert r["fast_settings"]["amp"] == "bf16"
