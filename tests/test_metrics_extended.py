"""Tests of the extended metrics: AP and F1-max, PRO at the masks' resolution, bootstrap intervals,
paired differences and DeLong's test, each against an independent oracle written here (sklearn, torch's
interpolate, slow restatements of MVTec's PRO and of DeLong et al. 1988). Run with -s for the printed
measurements (binning error, simulated agreement of DeLong and the paired bootstrap)."""

from __future__ import annotations

import bisect
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from scipy.stats import norm
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score
from test_metrics import random_set, rd4ad_pro_oracle

from rdbench.metrics import (
    INTERVAL_METRICS,
    ScoreSummary,
    bootstrap_intervals,
    delong_test,
    image_ap,
    image_ap_f1_max,
    image_auroc,
    image_f1_max,
    metric_values,
    paired_bootstrap_diff,
    pixel_ap,
    pixel_ap_f1_max,
    pixel_auroc,
    pixel_f1_max,
    pro_auc,
    pro_per_image,
    resample_weights,
    resize_bilinear,
    summarize,
)
from rdbench.metrics.ap import ap_f1_from_counts


# ----------------------------------------------------------------------------------------------- oracles
def f1_max_oracle(y: np.ndarray, s: np.ndarray) -> float:
    """anomalib's F1Max on sklearn's curve: max of 2PR / (P + R), 0/0 -> 0."""
    p, r, _ = precision_recall_curve(y, s)
    denom = p + r
    return float(np.max(np.where(denom > 0, 2 * p * r / np.where(denom > 0, denom, 1), 0.0)))


def torch_resize(amap: np.ndarray, size: tuple[int, int], align_corners: bool = False) -> np.ndarray:
    t = torch.from_numpy(np.asarray(amap, dtype=np.float64))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=align_corners)[0, 0].numpy()


def mvtec_pro_list_oracle(masks: list[np.ndarray], maps: list[np.ndarray], limit: float) -> float:
    """MVTec AD's compute_pro + trapezoid restated slowly for maps and masks of any sizes: one point per
    distinct score (descending) with FPR over all normal pixels and PRO = mean over all 8-connected regions
    of their covered share, padded with (0, 0) and (1, 1); area up to `limit` (interpolated), / limit."""
    regions = []
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    n_normal = sum(int((m == 0).sum()) for m in masks)
    xs, ys = [0.0], [0.0]
    for t in np.unique(np.concatenate([a.ravel() for a in maps]))[::-1]:
        pred = [a >= t for a in maps]
        xs.append(sum(int((p & (m == 0)).sum()) for p, m in zip(pred, masks)) / n_normal)
        ys.append(float(np.mean([(pred[i] & r).sum() / r.sum() for i, r in regions])))
    xs.append(1.0)
    ys.append(1.0)
    ins = bisect.bisect(xs, limit)
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(ins - 1))
    if xs[ins - 1] != limit:
        y_lim = ys[ins - 1] + (ys[ins] - ys[ins - 1]) * (limit - xs[ins - 1]) / (xs[ins] - xs[ins - 1])
        area += (limit - xs[ins - 1]) * (y_lim + ys[ins - 1]) / 2
    return area / limit


def delong_oracle(y: np.ndarray, sa: np.ndarray, sb: np.ndarray) -> tuple[float, float, float, float]:
    """DeLong et al. (1988) from the definition: psi(x, y) = 1, 1/2, 0 for x >, =, < y over every
    (anomalous, normal) pair; V10 / V01 row / column means; S10, S01 sample covariances; z; two-sided p."""
    y = y.astype(bool)
    v10, v01, aucs = [], [], []
    for s in (sa, sb):
        x, z = s[y][:, None], s[~y][None, :]
        psi = (x > z) + 0.5 * (x == z)
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = int(y.sum()), int((~y).sum())
    s10, s01 = np.cov(np.array(v10)), np.cov(np.array(v01))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    z = (aucs[1] - aucs[0]) / math.sqrt(var)
    return aucs[0], aucs[1], z, 2 * norm.sf(abs(z))


# ------------------------------------------------------------------------------------------------- data
def image_case(rng: np.random.Generator, n: int, decimals: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
    y[:2] = [0, 1]
    s = rng.random(n) + rng.uniform(0, 1) * y
    return y, (np.round(s, decimals) if decimals is not None else s)


def category(seed: int, n: int = 40, size: int = 96, signal: float = 0.15, n_normal: int | None = None):
    """A small MVTec-like category: ~30 % anomalous images with 1-3 blobby defects, smooth-noise maps with
    a bump on the defects (image score = map max). Returns (labels, image scores, masks uint8, maps f32)."""
    rng = np.random.default_rng(seed)
    n_normal = int(0.7 * n) if n_normal is None else n_normal
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n_normal, n):
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(8, size - 8, 2)
            ry, rx = rng.uniform(2, size / 10, 2)
            masks[i] |= (((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1).astype(np.uint8)
    noise = ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 3, 3))
    bump = ndimage.gaussian_filter(masks.astype(np.float64), (0, 2, 2)) * rng.uniform(0.5, 2, (n, 1, 1))
    maps = (0.3 + noise + signal * 4 * bump).astype(np.float32)
    labels = (masks.reshape(n, -1).max(axis=1) > 0).astype(int)
    return labels, maps.reshape(n, -1).max(axis=1), masks, maps


# ------------------------------------------------------------------------------------------- AP, F1-max
@pytest.mark.parametrize("seed", range(12))
def test_image_ap_f1_match_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, s = image_case(rng, int(rng.integers(3, 400)), decimals=[None, 1, 2][seed % 3])
    assert image_ap(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert image_f1_max(y, s) == pytest.approx(f1_max_oracle(y, s), abs=1e-9)
    assert image_ap_f1_max(y, s) == (image_ap(y, s), image_f1_max(y, s))


@pytest.mark.parametrize("seed", range(6))
def test_pixel_ap_f1_match_sklearn(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    masks, maps = random_set(rng, 4, 24, 31, levels=[None, 7, 2][seed % 3])
    if seed == 5:
        masks = 1 - masks  # more anomalous than normal pixels
    y, s = masks.ravel(), maps.ravel()
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-9)
    assert pixel_f1_max(masks, maps) == pytest.approx(f1_max_oracle(y, s), abs=1e-9)
    m32 = maps.astype(np.float32)  # float32 ties are float32 ties
    assert pixel_ap_f1_max(masks.astype(bool), m32) == pytest.approx(
        (average_precision_score(y, m32.ravel()), f1_max_oracle(y, m32.ravel())), abs=1e-9)


def test_ap_f1_hand_cases() -> None:
    # Scores 0.9 (A), 0.8 (N), 0.8 (A), 0.1 (A), 0.1 (N): thresholds 0.9: P 1, R 1/3; 0.8 (tie): P 2/3, R 2/3;
    # 0.1: P 3/5, R 1. AP = 1/3 + 1/3 * 2/3 + 1/3 * 3/5 = 0.7555...; F1: 1/2, 2/3, 3/4 -> 0.75.
    y, s = [1, 0, 1, 1, 0], [0.9, 0.8, 0.8, 0.1, 0.1]
    assert image_ap(y, s) == pytest.approx(1 / 3 + 2 / 9 + 1 / 5, abs=1e-15)
    assert image_f1_max(y, s) == pytest.approx(0.75, abs=1e-15)
    # Constant scores: one threshold, everything predicted: P = prevalence, R = 1.
    assert image_ap([0, 1, 1, 0], [0.3] * 4) == 0.5
    assert image_f1_max([0, 1, 1, 0], [0.3] * 4) == pytest.approx(2 * 0.5 / 1.5, abs=1e-15)
    # A single anomalous image ranked first, last, tied.
    assert image_ap([0, 0, 1], [0.1, 0.2, 0.9]) == 1.0 == image_f1_max([0, 0, 1], [0.1, 0.2, 0.9])
    assert image_ap([0, 0, 1], [0.5, 0.2, 0.1]) == pytest.approx(1 / 3, abs=1e-15)
    assert image_ap([0, 0, 1], [0.1, 0.1, 0.1]) == pytest.approx(1 / 3, abs=1e-15)
    assert pixel_ap(np.eye(3), np.eye(3)) == 1.0 == pixel_f1_max(np.eye(3), np.eye(3))


def test_ap_f1_from_counts_is_ap_of_binned_scores() -> None:
    # tied=True bins are tied scores: the counts of a histogram give sklearn's AP of the bin indices.
    rng = np.random.default_rng(3)
    y, s = image_case(rng, 500)
    k = np.digitize(s, np.linspace(s.min(), s.max(), 17)[1:-1])
    pos, neg = np.bincount(k[y == 1], minlength=16), np.bincount(k[y == 0], minlength=16)
    ap, f1 = ap_f1_from_counts(pos, neg, tied=True)
    assert ap == pytest.approx(average_precision_score(y, k), abs=1e-12)
    assert f1 == pytest.approx(f1_max_oracle(y, k), abs=1e-12)


def test_ap_bad_inputs() -> None:
    with pytest.raises(ValueError, match="no anomalous image"):
        image_ap([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="no normal pixel"):
        pixel_f1_max(np.ones((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"labels \(3,\) and scores \(2,\)"):
        image_f1_max([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="maps must be finite"):
        pixel_ap(np.eye(2), np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"masks must be binary"):
        pixel_ap(np.eye(2) * 255, np.eye(2))


# ------------------------------------------------------------------------------- PRO at mask resolution
@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize(("src", "dst"), [((8, 8), (20, 20)), ((5, 7), (13, 9)), ((6, 6), (6, 6)),
                                          ((9, 4), (4, 3)), ((1, 3), (5, 1)), ((3, 3), (1000, 700))])
def test_resize_bilinear_matches_torch(src: tuple[int, int], dst: tuple[int, int], align_corners: bool) -> None:
    amap = np.random.default_rng(sum(src + dst)).random(src)
    expected = torch_resize(amap, dst, align_corners)
    assert np.abs(resize_bilinear(amap, dst, align_corners) - expected).max() < 1e-12
    out32 = resize_bilinear(amap.astype(np.float32), dst, align_corners)
    assert out32.dtype == np.float32 and np.abs(out32 - expected).max() < 1e-6


def _small_full_res_case(seed: int, same_size: bool):
    rng = np.random.default_rng(seed)
    n, h = int(rng.integers(2, 4)), 6
    shapes = [(15, 15)] * n if same_size else [tuple(int(v) for v in rng.integers(9, 19, 2)) for _ in range(n)]
    masks = []
    for i, shape in enumerate(shapes):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), 1.5)
        masks.append((field > np.quantile(field, rng.uniform(0.75, 0.95))).astype(np.uint8) if i < n - 1 or
                     rng.random() < 0.5 else np.zeros(shape, np.uint8))
    return masks, rng.random((n, h, h))


@pytest.mark.parametrize("same_size", [True, False])
@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("limit", [0.3, 1.0])
def test_pro_mask_resolution_matches_mvtec_restatement(seed: int, same_size: bool, limit: float) -> None:
    masks, maps = _small_full_res_case(seed, same_size)
    big = [resize_bilinear(a, m.shape) for a, m in zip(maps, masks)]  # checked against torch above
    expected = mvtec_pro_list_oracle(masks, big, limit)
    assert pro_auc(masks, maps, limit, "mvtec", resolution="mask") == pytest.approx(expected, abs=1e-6)
    if same_size:  # a 3-D stack of masks is N masks too
        assert pro_auc(np.stack(masks), maps, limit, resolution="mask") == pytest.approx(expected, abs=1e-6)
    # With torch's upsampling the values differ in the last bit, which decides some exact ties (the
    # border rows and columns are copies, integer ratios repeat weights): the curve moves by those only.
    torch_big = [torch_resize(a, m.shape) for a, m in zip(maps, masks)]
    assert pro_auc(masks, maps, limit, resolution="mask") == pytest.approx(
        mvtec_pro_list_oracle(masks, torch_big, limit), abs=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_pro_mask_resolution_with_tied_maps(seed: int) -> None:
    # Quantised maps: many tied upsampled values, the tie handling at mask size.
    masks, maps = _small_full_res_case(20 + seed, same_size=False)
    maps = np.round(maps * 4) / 4
    big = [resize_bilinear(a, m.shape) for a, m in zip(maps, masks)]
    expected = mvtec_pro_list_oracle(masks, big, 0.3)
    assert pro_auc(masks, maps, resolution="mask") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_pro_mask_resolution_rd4ad_is_per_image(seed: int) -> None:
    masks, maps = _small_full_res_case(10 + seed, same_size=False)
    values = [rd4ad_pro_oracle(m[None], torch_resize(a, m.shape)[None], 0.3) for m, a in zip(masks, maps)
              if m.any()]
    assert pro_auc(masks, maps, variant="rd4ad", resolution="mask") == pytest.approx(np.mean(values), abs=1e-6)


def test_pro_mask_resolution_of_same_size_is_map_resolution() -> None:
    masks, maps = random_set(np.random.default_rng(4), 3, 12, 12)
    for variant in ("mvtec", "rd4ad"):
        assert pro_auc(list(masks), maps, variant=variant, resolution="mask") == pytest.approx(
            pro_auc(masks, maps, variant=variant), abs=1e-12)
    per_image = pro_per_image(masks, maps)
    assert np.isnan(per_image[~masks.reshape(3, -1).any(1)]).all()
    assert np.nanmean(per_image) == pytest.approx(pro_auc(masks, maps, variant="rd4ad"), abs=1e-15)


def test_pro_mask_resolution_bad_inputs() -> None:
    masks, maps = _small_full_res_case(1, same_size=False)
    with pytest.raises(ValueError, match="unknown PRO resolution 'full'.*map, mask"):
        pro_auc(masks, maps, resolution="full")
    with pytest.raises(ValueError, match="needs maps N x h x w and N masks"):
        pro_auc(masks[:-1], maps, resolution="mask")
    with pytest.raises(ValueError, match="each mask must be 2-D"):
        pro_auc([m[None] for m in masks], maps, resolution="mask")
    with pytest.raises(ValueError, match="masks must be binary"):
        pro_auc([m * 255 for m in masks], maps, resolution="mask")
    with pytest.raises(ValueError, match="no anomalous pixel"):
        pro_auc([m * 0 for m in masks], maps, resolution="mask")
    with pytest.raises(ValueError, match="2-D map and a size"):
        resize_bilinear(np.zeros((2, 2, 2)), (4, 4))


# ------------------------------------------------------------------------------------------- bootstrap
def test_resampling_is_seeded_and_stratified() -> None:
    labels = np.array([0] * 7 + [1] * 3 + [0] * 2)
    w = resample_weights(labels, 300, seed=5)
    assert w.shape == (300, 12) and w.dtype == np.int32
    assert (w[:, labels == 0].sum(1) == 9).all() and (w[:, labels == 1].sum(1) == 3).all()
    assert np.array_equal(w, resample_weights(labels, 300, seed=5))
    assert not np.array_equal(w, resample_weights(labels, 300, seed=6))
    assert (w.mean(0) > 0.8).all() and (w.mean(0) < 1.2).all()  # every image drawn once on average


def test_image_metrics_of_a_resample_are_exact() -> None:
    # A resample is the test set with duplicates: its metrics must be sklearn's on the duplicated scores.
    rng = np.random.default_rng(11)
    y, s = image_case(rng, 60, decimals=1)
    summary = summarize(y, s)
    w = resample_weights(y, 5, seed=1)
    got = metric_values(summary, w)
    for r, row in enumerate(w):
        yy, ss = np.repeat(y, row), np.repeat(s, row)
        assert got["image_auroc"][r] == pytest.approx(roc_auc_score(yy, ss), abs=1e-12)
        assert got["image_ap"][r] == pytest.approx(average_precision_score(yy, ss), abs=1e-12)
        assert got["image_f1_max"][r] == pytest.approx(f1_max_oracle(yy, ss), abs=1e-12)


def test_pixel_metrics_of_a_resample_match_duplicated_images() -> None:
    labels, scores, masks, maps = category(21, n=20, size=64)
    summary = summarize(labels, scores, masks, maps)
    w = resample_weights(labels, 3, seed=2)
    got = metric_values(summary, w)
    for r, row in enumerate(w):
        mm, aa = np.repeat(masks, row, axis=0), np.repeat(maps, row, axis=0)
        assert abs(got["pixel_auroc"][r] - pixel_auroc(mm, aa)) < 1e-4
        assert abs(got["pixel_ap"][r] - pixel_ap(mm, aa)) < 1e-3
        assert abs(got["pixel_f1_max"][r] - pixel_f1_max(mm, aa)) < 1e-3
        assert got["pro_rd4ad"][r] == pytest.approx(pro_auc(mm, aa, variant="rd4ad"), abs=1e-12)


CATEGORIES = [(seed, n, size, signal) for seed, (n, size, signal) in enumerate(
    [(40, 96, 0.05), (40, 96, 0.15), (30, 128, 0.5), (60, 64, 1.5), (100, 256, 0.15)])]


@pytest.mark.parametrize(("seed", "n", "size", "signal"), CATEGORIES)
def test_binning_error_is_below_a_tenth_of_a_point(seed: int, n: int, size: int, signal: float) -> None:
    # The test set itself and (but for the large case, whose exact metrics take seconds) three resamples,
    # whose duplicated images are what the intervals are made of.
    labels, scores, masks, maps = category(seed, n, size, signal)
    summary = summarize(labels, scores, masks, maps, pro_fpr_limit=None)
    rows = np.vstack([np.ones((1, n), int)] + ([resample_weights(labels, 3, seed)] if n * size**2 < 2**20 else []))
    binned = metric_values(summary, rows)
    worst = np.zeros(3)
    for r, row in enumerate(rows):
        mm, aa = np.repeat(masks, row, axis=0), np.repeat(maps, row, axis=0)
        exact = (pixel_auroc(mm, aa), *pixel_ap_f1_max(mm, aa))
        err = [abs(binned[f"pixel_{k}"][r] - e) for k, e in zip(("auroc", "ap", "f1_max"), exact)]
        worst = np.maximum(worst, err)
        assert binned["pixel_f1_max"][r] <= exact[2] + 1e-12  # a maximum over fewer thresholds
        if r == 0:
            assert err[0] <= summary.pixel_auroc_error_bound() + 1e-12
    print(f"\n{n} x {size}^2, {int(masks.sum())} anomalous pixels, {summary.tied.size} bins, {len(rows)} rows: "
          f"largest binning error AUROC {worst[0]:.1e}, AP {worst[1]:.1e}, F1-max {worst[2]:.1e}")
    assert worst.max() < 1e-3


def test_binning_is_exact_for_few_distinct_scores() -> None:
    # Every distinct score gets a bin of its own (each is heavier than 1 / n_bins): all bins tied, exact.
    labels, scores, masks, maps = category(8, n=20, size=48)
    maps = np.round(maps * 8) / 8
    summary = summarize(labels, scores, masks, maps, pro_fpr_limit=None)
    assert summary.tied.all() and summary.pixel_auroc_error_bound() == 0.0
    got = metric_values(summary, np.ones((1, 20)))
    assert got["pixel_auroc"][0] == pytest.approx(pixel_auroc(masks, maps), abs=1e-12)
    assert got["pixel_ap"][0] == pytest.approx(pixel_ap(masks, maps), abs=1e-12)
    assert got["pixel_f1_max"][0] == pytest.approx(pixel_f1_max(masks, maps), abs=1e-12)
    const = summarize(labels, scores, masks, np.full(maps.shape, 0.5), pro_fpr_limit=None)
    assert const.edges.tolist() == [0.5, 0.5] and const.tied.tolist() == [True]


def test_intervals_seeded_and_contain_the_estimate() -> None:
    labels, scores, masks, maps = category(3, n=40, size=64, signal=0.3)
    summary = summarize(labels, scores, masks, maps)
    iv = bootstrap_intervals(summary, 400, seed=7)
    assert tuple(iv) == INTERVAL_METRICS == summary.metrics
    assert iv == bootstrap_intervals(summary, 400, seed=7) != bootstrap_intervals(summary, 400, seed=8)
    for name, (estimate, low, high) in iv.items():
        assert 0 <= low <= estimate <= high <= 1, name
    assert iv["image_auroc"].estimate == pytest.approx(image_auroc(labels, scores), abs=1e-12)
    assert iv["image_ap"].estimate == pytest.approx(image_ap(labels, scores), abs=1e-12)
    assert iv["pro_rd4ad"].estimate == pytest.approx(pro_auc(masks, maps, variant="rd4ad"), abs=1e-12)
    narrow = bootstrap_intervals(summary, 400, seed=7, level=0.5, metrics=["image_auroc"])
    assert list(narrow) == ["image_auroc"]
    assert iv["image_auroc"].low <= narrow["image_auroc"].low <= narrow["image_auroc"].high <= iv["image_auroc"].high


def test_npz_round_trip(tmp_path) -> None:
    labels, scores, masks, maps = category(4, n=12, size=32)
    full = summarize(labels, scores, masks, maps)
    full.to_npz(tmp_path / "run.npz")
    back = ScoreSummary.from_npz(tmp_path / "run.npz")
    for name in ("labels", "image_scores", "edges", "tied", "normal_counts", "anomalous_counts", "pro"):
        a, b = getattr(full, name), getattr(back, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
    assert bootstrap_intervals(back, 100) == bootstrap_intervals(full, 100)
    image_only = summarize(labels, scores)
    image_only.to_npz(tmp_path / "img.npz")
    assert ScoreSummary.from_npz(tmp_path / "img.npz").metrics == ("image_auroc", "image_ap", "image_f1_max")
    np.savez(tmp_path / "other.npz", labels=labels)
    with pytest.raises(ValueError, match="not a score summary"):
        ScoreSummary.from_npz(tmp_path / "other.npz")


def test_paired_difference() -> None:
    labels, _, masks, maps = category(5, n=40, size=48, signal=0.3)
    scores = np.random.default_rng(0).random(40) + 0.5 * labels  # image AUROC well below 1
    a = summarize(labels, scores, masks, maps)
    same = paired_bootstrap_diff(a, a, 200)
    assert all(v == (0.0, 0.0, 0.0) for v in same.values())
    # A monotone change of the scores changes no ranking: every image metric's difference is exactly 0.
    b = summarize(labels, 2 * scores + 1, masks, maps)
    assert all(v == (0.0, 0.0, 0.0) for v in paired_bootstrap_diff(a, b, 200).values())
    # A better model: the estimate is B - A; the resamples are the same images for both.
    better = summarize(labels, scores + 0.25 * labels, masks, maps + masks.astype(np.float32))
    d = paired_bootstrap_diff(a, better, 300, seed=1)
    ia, ib = bootstrap_intervals(a, 300, seed=1), bootstrap_intervals(better, 300, seed=1)
    for m in d:
        assert d[m].estimate == pytest.approx(ib[m].estimate - ia[m].estimate, abs=1e-12)
    assert d["pixel_auroc"].low > 0 and d["image_auroc"].low > 0 and d["pixel_ap"].low > 0
    # Pairing: the interval of the difference is narrower than the two runs' intervals side by side.
    assert d["image_auroc"].high - d["image_auroc"].low < (ia["image_auroc"].high - ia["image_auroc"].low
                                                           + ib["image_auroc"].high - ib["image_auroc"].low)
    with pytest.raises(ValueError, match="same test images"):
        paired_bootstrap_diff(a, summarize(labels[::-1], scores), 10)


def test_bootstrap_bad_inputs() -> None:
    labels, scores, masks, maps = category(6, n=10, size=32)
    s = summarize(labels, scores)
    with pytest.raises(ValueError, match="no interval for pixel_ap; available: image_auroc"):
        bootstrap_intervals(s, 10, metrics=["pixel_ap"])
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_intervals(s, 10, level=95)
    with pytest.raises(ValueError, match="n_resamples must be an integer"):
        bootstrap_intervals(s, 0)
    with pytest.raises(ValueError, match="weights must be R x 10"):
        metric_values(s, np.ones(10))
    with pytest.raises(ValueError, match="10 labels but 9 masks"):
        summarize(labels, scores, masks[:9], maps[:9])
    with pytest.raises(ValueError, match="n_bins must be an integer >= 2"):
        summarize(labels, scores, masks, maps, n_bins=1)
    with pytest.raises(ValueError, match="no anomalous image"):
        summarize(np.zeros(10), scores)
    with pytest.raises(ValueError, match="labels must be binary"):
        summarize(labels * 2, scores)


# ---------------------------------------------------------------------------------------------- DeLong
@pytest.mark.parametrize("seed", range(8))
def test_delong_matches_restatement(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    y, sa = image_case(rng, int(rng.integers(6, 200)), decimals=[None, 1][seed % 2])
    sb = sa + rng.normal(0, 0.3, sa.size)
    if seed % 2:
        sb = np.round(sb, 1)
    got, expected = delong_test(y, sa, sb), delong_oracle(y, sa, sb)
    assert got == pytest.approx(expected, abs=1e-6)
    assert got.auc_a == pytest.approx(roc_auc_score(y, sa), abs=1e-12)
    assert delong_test(y, sb, sa).z == pytest.approx(-got.z, abs=1e-12)


def test_delong_degenerate_and_bad_inputs() -> None:
    y, s = [0, 0, 1, 1, 0, 1], np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.6])
    assert delong_test(y, s, s) == (8 / 9, 8 / 9, 0.0, 1.0)
    assert delong_test(y, s, 2 * s + 3) == (8 / 9, 8 / 9, 0.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 anomalous and 2 normal"):
        delong_test([0, 0, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(ValueError, match="1-D of equal length"):
        delong_test([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], [0.1, 0.2])


def agreement(n_cases: int, n_resamples: int, seed: int = 0) -> tuple[float, int]:
    """Simulated study: 100 images (30 % anomalous), two correlated detectors; half the cases with no true
    difference, half with one. Returns (share of cases where DeLong p < 0.05 and the paired bootstrap
    interval excluding 0 agree, number of cases called significant by DeLong)."""
    rng = np.random.default_rng(seed)
    agree = called = 0
    for case in range(n_cases):
        y = np.zeros(100, dtype=int)
        y[rng.permutation(100)[:30]] = 1
        common = rng.standard_normal(100)
        shift_b = 1.0 + (rng.uniform(0.2, 0.8) if case % 2 else 0.0)
        sa = 1.0 * y + common + 0.6 * rng.standard_normal(100)
        sb = shift_b * y + common + 0.6 * rng.standard_normal(100)
        p = delong_test(y, sa, sb).p
        d = paired_bootstrap_diff(summarize(y, sa), summarize(y, sb), n_resamples, seed=case,
                                  metrics=["image_auroc"])["image_auroc"]
        boot_sig = d.low > 0 or d.high < 0
        agree += (p < 0.05) == boot_sig
        called += p < 0.05
    return agree / n_cases, called


def test_delong_and_paired_bootstrap_agree() -> None:
    rate, called = agreement(60, 500)
    print(f"\nDeLong / paired bootstrap agreement: {rate:.1%} of 60 cases ({called} significant by DeLong)")
    assert rate >= 0.9 and 10 <= called <= 50
