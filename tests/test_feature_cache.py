"""The teacher-feature cache: bit-identical training on CPU, budget respected, batches of one bypassed."""

from __future__ import annotations

import pytest
import torch

from rdbench.config import RunConfig
from rdbench.engine.feature_cache import CPU_BUDGET_BYTES, TeacherFeatureCache, default_budget
from rdbench.engine.train import train
from rdbench.models.rd import build_rd_model

pytestmark = pytest.mark.usefixtures("one_thread")


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int, size: int = 64, seed: int = 0):
        self.x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.x[i]


def _train(data, budget, epochs=3, batch_size=2, seed=3):
    cfg = RunConfig(backbone="resnet18", weights="none", epochs=epochs, batch_size=batch_size, image_size=64,
                    seed=seed, device="cpu")
    torch.manual_seed(seed)
    model = build_rd_model("resnet18", "none")
    result = train(model, data, cfg, torch.device("cpu"), progress=False, feature_cache_bytes=budget)
    return model, result


def _state(model):
    return {k: v for m in (model.bottleneck, model.decoder) for k, v in m.state_dict().items()}


@pytest.fixture(scope="module")
def uncached():
    # 5 images, batch 2: the last batch of every epoch holds one image (never cached, see feature_cache)
    data = _Images(5)
    return data, *_train(data, budget=0)


def test_budget_zero_means_no_cache(uncached):
    _, _, result = uncached
    info = result.feature_cache
    assert not info["active"] and info["hits"] == 0 and info["bytes"] == 0
    assert info["computed"] == 5 * 3  # every image, every epoch


def test_cached_training_is_bit_identical(uncached):
    data, ref_model, ref_result = uncached
    model, result = _train(data, budget=None)
    info = result.feature_cache
    assert info["active"] and info["hits"] > 0, info
    assert info["bytes"] <= info["budget_bytes"] <= CPU_BUDGET_BYTES
    assert result.loss_curve == ref_result.loss_curve
    a, b = _state(model), _state(ref_model)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_over_budget_falls_back_to_recomputing(uncached):
    data, ref_model, ref_result = uncached
    per_image = (64 * 16 * 16 + 128 * 8 * 8 + 256 * 4 * 4) * 4  # resnet18 layer1-3 at 64 px, float32
    model, result = _train(data, budget=5 * per_image - 1, epochs=2)
    info = result.feature_cache
    assert not info["active"] and "budget" in info["reason"] and info["hits"] == 0
    assert result.loss_curve == ref_result.loss_curve[:2]
    _, fits = _train(data, budget=5 * per_image, epochs=1)
    assert fits.feature_cache["active"] and fits.feature_cache["bytes"] == 5 * per_image


class _Flaky(torch.nn.Module):
    """A 'teacher' whose output changes between calls, as a device whose kernels depend on the batch would."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return [x * 1.0 + self.calls * 1e-7]


def test_exact_check_drops_a_cache_that_would_change_results():
    cache = TeacherFeatureCache(_Flaky(), 4, "cpu", budget_bytes=1 << 20, exact=True)
    images = torch.randn(4, 2, 3, 3)
    idx = torch.tensor([0, 1, 2, 3])
    first = cache.features(idx, lambda: images[idx])
    assert cache.complete
    again = cache.features(idx, lambda: images[idx])  # served from the cache, checked: differs -> dropped
    assert not cache.active and "differ" in cache.info()["reason"]
    assert not torch.equal(first[0], again[0])  # the fresh features are returned
    cache.features(idx, lambda: images[idx])
    assert cache.info()["hits"] == 0


def test_batches_of_one_bypass_the_cache():
    teacher = torch.nn.Identity()
    cache = TeacherFeatureCache(lambda x: [teacher(x)], 3, "cpu", budget_bytes=1 << 20, exact=False)
    images = torch.randn(3, 2, 3, 3)
    cache.features(torch.tensor([2]), lambda: images[[2]])
    assert cache.store is None and cache.info()["filled"] == 0
    cache.features(torch.tensor([0, 1]), lambda: images[[0, 1]])
    out = cache.features(torch.tensor([1, 0]), lambda: pytest.fail("should come from the cache"))
    assert torch.equal(out[0], images[[1, 0]])
    assert cache.info()["hits"] == 2 and cache.info()["filled"] == 2


def test_default_budget_on_cpu_is_bounded():
    assert 0 < default_budget(torch.device("cpu")) <= CPU_BUDGET_BYTES


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_default_budget_on_cuda_is_a_fraction_of_free_memory():
    free, _ = torch.cuda.mem_get_info()
    assert 0 < default_budget(torch.device("cuda")) <= free
