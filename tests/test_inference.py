"""rdbench.engine.inference: the prepared model equals the plain one; the pieces equal what they replace; amp."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rdbench.engine.evaluate import predict_maps
from rdbench.engine.inference import (
    PackedConv2d,
    PixelShuffleDeconv,
    cpu_micro_batch,
    fast_predict,
    fold_batchnorm,
    inference_options,
    prepare_for_inference,
    release_free_memory,
    unused_modules,
)
from rdbench.models.rd import build_rd_model
from rdbench.records.provenance import bf16_native

pytestmark = pytest.mark.usefixtures("one_thread")


def randomise_batchnorm(model: nn.Module, seed: int) -> nn.Module:
    """Trained-looking batch norms (a fresh model's are identities: a wrong fold would go unseen)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
    return model


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return randomise_batchnorm(build_rd_model("resnet18", "none"), 1).eval()


def test_preparing_draws_no_random_numbers(model):
    state = torch.get_rng_state()
    prepare_for_inference(model, "cpu")
    assert torch.equal(state, torch.get_rng_state())  # evaluating a run leaves the caller's random stream alone


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


def test_the_copy_skips_what_scoring_never_runs(model):
    prepared = prepare_for_inference(model, "cpu")
    assert prepared.bottleneck.conv4 is None and prepared.bottleneck.bn4 is None
    assert isinstance(model.bottleneck.conv4, nn.Conv2d)  # the trained model keeps its parameters (checkpoints)
    assert unused_modules(prepared) == [] and len(unused_modules(model)) == 2


def test_consume_converts_the_model_in_place_to_one_copy_of_its_weights():
    torch.manual_seed(3)
    model = randomise_batchnorm(build_rd_model("resnet18", "none"), 3).eval()
    x = torch.randn(2, 3, 64, 64)
    expected = predict_maps(model, x, (1, 2, 3), 4.0)
    dense = {id(p) for p in model.parameters()}
    prepared = prepare_for_inference(model, "cpu", consume=True)
    assert prepared is model and model.rdbench_inference_only and model.bottleneck.conv4 is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert (fast_predict(prepared, x) - expected).abs().max() < 1e-5
    packed = [m for m in model.modules() if isinstance(m, PackedConv2d)]
    assert packed and all(m.packed is not None and m.weight_dense is None for m in packed)  # no plain copy beside
    assert not dense & {id(p) for p in model.parameters()}  # no parameter of the trained modules is left
    release_free_memory()  # callable anywhere; a no-op without glibc


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
    assert low.dtype == torch.float64  # maps are summed and smoothed in float64, as the authors do
    span = float(ref.max() - ref.min())
    assert (low - ref).abs().max() < 0.1 * span  # bf16 keeps 8 bits of mantissa: close, not equal
    assert torch.corrcoef(torch.stack([low.flatten(), ref.flatten()]))[0, 1] > 0.95
    with pytest.raises(ValueError, match="fp16"):
        fast_predict(prepared, x, amp="fp16")
    with pytest.raises(ValueError, match="unknown amp"):
        fast_predict(prepared, x, amp="int8")


def test_evaluation_scores_with_a_prepared_copy(tiny_mvtec):
    from rdbench.data.mvtec import MVTecTest
    from rdbench.engine.evaluate import collect_maps

    torch.manual_seed(2)
    model = randomise_batchnorm(build_rd_model("resnet18", "none"), 2)
    model.train()
    test_set = MVTecTest(tiny_mvtec, "carpet", 64)
    # batch 3 over 4 images: the packed weights are laid out for the first batch and reused for the last
    fast, items, _, _ = collect_maps(model, test_set, (1, 2, 3), 4.0, torch.device("cpu"), batch_size=3)
    plain, _, _, _ = collect_maps(model, test_set, (1, 2, 3), 4.0, torch.device("cpu"), batch_size=3, fast=False)
    assert fast.shape == plain.shape == (4, 64, 64) and items["label"] == [0, 0, 1, 1]
    assert abs(fast - plain).max() < 1e-5 and abs(fast - plain).max() > 0  # the rewrites did run
    # the model itself is not rewritten (it may still be training)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert not any(isinstance(m, PackedConv2d) for m in model.modules())
    low, _, _, _ = collect_maps(model, test_set, (1, 2, 3), 4.0, torch.device("cpu"), batch_size=3, amp="bf16")
    assert low.dtype == np.float64 and 0 < abs(low - plain).max() < 0.1 * (plain.max() - plain.min())
    with pytest.raises(ValueError, match="fp16 autocast is for CUDA"):
        collect_maps(model, test_set, (1, 2, 3), 4.0, torch.device("cpu"), amp="fp16")


@pytest.mark.slow  # compiling takes ~20 s on a 2-core CPU
def test_compiled_inference_equals_eager(model):
    x = torch.randn(2, 3, 64, 64)
    compiled = prepare_for_inference(model, "cpu", compile=True)
    assert compiled.rdbench_compiled and not compiled.rdbench_prepacked
    assert (fast_predict(compiled, x) - predict_maps(model, x, (1, 2, 3), 4.0)).abs().max() < 1e-5
    with pytest.raises(ValueError, match="exclude each other"):
        prepare_for_inference(model, "cpu", prepack=True, compile=True)


def test_bfloat16_copy_casts_the_weights_once_and_packs_them(model):
    """The CPU's bf16 scoring (inference_options): weights cast once after folding and packed, the images cast to
    bf16 by fast_predict; its maps are autocast's arithmetic, close to float32 as bf16 allows."""
    assert inference_options("bf16", torch.device("cpu")) == {"dtype": "bfloat16"}
    assert inference_options("bf16", torch.device("cuda")) == {"prepack": False}  # autocast there
    assert inference_options("none", torch.device("cpu")) == {}
    low = prepare_for_inference(model, "cpu", dtype="bfloat16")
    packed = [m for m in low.modules() if isinstance(m, PackedConv2d)]
    native = bf16_native("cpu")  # oneDNN packs bf16 weights only on AVX512/AMX; elsewhere plain bf16 convolutions
    assert (bool(packed) and all(m.dtype == torch.bfloat16 for m in packed)) if native else packed == []
    if not native:
        with pytest.raises(ValueError, match="native bf16"):
            prepare_for_inference(model, "cpu", dtype="bfloat16", prepack=True)
    assert all(p.dtype == torch.bfloat16 for p in low.parameters())
    assert cpu_micro_batch(low, (256, 256)) > cpu_micro_batch(prepare_for_inference(model, "cpu"), (256, 256))
    seen = []
    hook = low.teacher.layer3.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))
    x = torch.randn(3, 3, 64, 64)
    maps = fast_predict(low, x)
    hook.remove()
    assert seen == [torch.bfloat16] and maps.dtype == torch.float64
    auto = fast_predict(prepare_for_inference(model, "cpu", prepack=False), x, amp="bf16")
    ref = fast_predict(prepare_for_inference(model, "cpu"), x)
    span = float(ref.max() - ref.min())
    assert (maps - ref).abs().max() < 0.1 * span
    assert (maps - auto).abs().max() < 1e-3 * span  # the same bf16 arithmetic (equal on the CI CPU)
    assert torch.equal(fast_predict(low, x, amp="bf16"), maps)  # amp is implied by the copy's dtype
    with pytest.raises(ValueError, match="bfloat16"):
        prepare_for_inference(model, "cpu", dtype=torch.float16)
    if native:
        with pytest.raises(ValueError, match="runs torch.bfloat16"):
            packed[0](torch.randn(1, packed[0].in_channels, 8, 8).contiguous(memory_format=torch.channels_last))
