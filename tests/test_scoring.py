from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

from rdbench.engine.scoring import anomaly_maps, gaussian_blur, gaussian_taps, image_scores, novelty_scores


@pytest.mark.parametrize("shape", [(2, 256, 256), (3, 17, 9), (1, 5, 40), (1, 1, 1), (2, 64, 33)])
@pytest.mark.parametrize("sigma", [4.0, 1.5, 0.7])
def test_gaussian_equals_scipy(shape, sigma):
    rng = np.random.default_rng(sum(shape))
    maps = rng.random(shape) * rng.integers(1, 5)
    ref = np.stack([gaussian_filter(m, sigma=sigma) for m in maps])  # mode reflect, truncate 4
    got = gaussian_blur(torch.from_numpy(maps).float(), sigma).double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    got64 = gaussian_blur(torch.from_numpy(maps), sigma).numpy()
    np.testing.assert_allclose(got64, ref, atol=1e-12, rtol=0)


def test_gaussian_has_scipy_tap_count():
    assert gaussian_taps(4.0) == 33  # the authors' sigma=4 -> radius 16
    impulse = torch.zeros(1, 101, 101, dtype=torch.float64)
    impulse[0, 50, 50] = 1
    out = gaussian_blur(impulse, 4.0)[0]
    assert out[50, 50 - 16] > 0 and out[50, 50 - 17] == 0
    assert float(out.sum()) == pytest.approx(1.0, abs=1e-12)


def test_gaussian_rejects_bad_shape():
    with pytest.raises(ValueError, match="N x H x W"):
        gaussian_blur(torch.zeros(4, 4))


def _authors_map(fs_list, ft_list, out_size):
    # the authors' cal_anomaly_map(amap_mode='a'), restated for one image in numpy float64
    total = np.zeros([out_size, out_size])
    for fs, ft in zip(fs_list, ft_list):
        a = 1 - F.cosine_similarity(fs, ft)
        a = F.interpolate(a.unsqueeze(1), size=out_size, mode="bilinear", align_corners=True)
        total += a[0, 0].numpy()
    return total


def test_anomaly_maps_equal_authors_formula():
    g = torch.Generator().manual_seed(0)
    t = [torch.randn(2, c, s, s, generator=g) for c, s in ((8, 16), (16, 8), (32, 4))]
    s = [x + 0.5 * torch.randn(x.shape, generator=g) for x in t]
    maps = anomaly_maps(t, s, 64)
    assert maps.shape == (2, 64, 64)
    for i in range(2):
        ref = _authors_map([x[i:i + 1] for x in s], [x[i:i + 1] for x in t], 64)
        np.testing.assert_allclose(maps[i].numpy(), ref, atol=1e-5)
    only3 = anomaly_maps(t, s, 64, layers=(3,))
    ref3 = _authors_map([s[2][:1]], [t[2][:1]], 64)
    np.testing.assert_allclose(only3[0].numpy(), ref3, atol=1e-5)


def test_identical_features_give_zero_map_and_layers_validated():
    t = [torch.rand(1, 4, 8, 8) + 0.1]
    assert float(anomaly_maps(t, t, 32, layers=(1,)).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="at least one"):
        anomaly_maps(t, t, 32, layers=())


def test_scores():
    maps = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[5.0, 0.0], [0.0, 0.0]]])
    assert image_scores(maps).tolist() == [3.0, 5.0]
    ns = novelty_scores(maps)
    assert ns["sum"].tolist() == [6.0, 5.0] and ns["max"].tolist() == [3.0, 5.0]
