"""Tests for rdbench.metrics against independent oracles written here.

The oracles are deliberately slow and literal: sklearn for AUROC, a threshold-by-threshold loop for the
MVTec PRO curve, and the authors' compute_pro loop (skimage label + regionprops, sklearn auc) for the
RD4AD variant. Run with -s to see the timing print.
"""

from __future__ import annotations

import bisect
import statistics

import numpy as np
import pytest
from scipy import ndimage
from skimage import measure
from sklearn.metrics import auc, roc_auc_score

from rdbench.metrics import image_auroc, pixel_auroc, pro_auc


# ----------------------------------------------------------------------------------------------- oracles
def mvtec_pro_oracle(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """MVTec AD's AU-PRO restated plainly: one point per distinct score, then trapezoid up to `limit`."""
    masks = masks.astype(bool)
    regions = []  # (image index, boolean mask of one 8-connected region)
    for i, m in enumerate(masks):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        regions += [(i, lab == r) for r in range(1, n + 1)]
    normal = ~masks
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:  # descending distinct scores
        pred = maps >= t
        xs.append((pred & normal).sum() / normal.sum())
        ys.append(np.mean([(pred[i] & r).sum() / r.sum() for i, r in regions]))
    xs.append(1.0)
    ys.append(1.0)
    # MVTec's trapezoid(x, y, x_max): area of points with x <= x_max, plus the piece from the last such
    # point to x_max with y interpolated linearly towards the first point beyond x_max.
    ins = bisect.bisect(xs, limit)
    area = sum((xs[i + 1] - xs[i]) * (ys[i + 1] + ys[i]) / 2 for i in range(ins - 1))
    if xs[ins - 1] != limit:
        y_lim = ys[ins - 1] + (ys[ins] - ys[ins - 1]) * (limit - xs[ins - 1]) / (xs[ins] - xs[ins - 1])
        area += (limit - xs[ins - 1]) * (y_lim + ys[ins - 1]) / 2
    return area / limit


def rd4ad_pro_oracle(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    """The authors' compute_pro, called once per anomalous image as their evaluation() does.

    Only the cases where their code crashes or gives NaN follow rdbench's documented rules.
    """
    values = []
    for mask, amap in zip(masks.astype(int), maps.astype(np.float64), strict=True):
        if mask.sum() == 0:
            continue  # label == 0: not passed to compute_pro
        min_th, max_th = amap.min(), amap.max()
        if min_th == max_th:
            values.append(0.0)  # rule: constant map
            continue
        delta = (max_th - min_th) / 200
        regions = measure.regionprops(measure.label(mask))
        inverse = 1 - mask
        pros, fprs = [], []
        for th in np.arange(min_th, max_th, delta):
            binary = amap > th
            pros.append(statistics.mean(
                binary[r.coords[:, 0], r.coords[:, 1]].sum() / r.area for r in regions))
            fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum() if inverse.sum() else 0.0)
        pros, fprs = np.array(pros), np.array(fprs)
        keep = fprs < limit
        pros, fprs = pros[keep], fprs[keep]
        if fprs.size == 0:
            values.append(0.0)  # rule: no kept point
        elif fprs.max() == 0:
            values.append(pros.max())  # rule: best PRO at zero FPR
        elif fprs.size == 1:
            values.append(0.0)  # rule: single point
        else:
            values.append(auc(fprs / fprs.max(), pros))
    return float(np.mean(values))


# ------------------------------------------------------------------------------------------------- data
def random_set(rng: np.random.Generator, n: int, h: int, w: int, levels: int | None = None,
               p_anomalous: float = 0.6) -> tuple[np.ndarray, np.ndarray]:
    """Blobby masks (several regions per image, some normal images) and maps with some signal."""
    masks = np.zeros((n, h, w), dtype=np.uint8)
    for i in range(n):
        if i == 0 or rng.random() < p_anomalous:
            field = ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma=rng.uniform(0.7, 2.0))
            masks[i] = field > np.quantile(field, rng.uniform(0.75, 0.95))
    if masks.all():
        masks[-1, 0, 0] = 0
    maps = rng.random((n, h, w)) + rng.uniform(0, 1.5) * masks * rng.random((n, h, w))
    if levels:  # quantised scores: many ties, also between normal and anomalous pixels
        maps = np.round(maps * levels) / levels
    return masks, maps


def test_random_sets_include_corner_touching_regions() -> None:
    # Sanity check of the generator: 4- and 8-connectivity disagree on some of these masks.
    rng = np.random.default_rng(0)
    masks, _ = random_set(rng, 8, 20, 20)
    n8 = sum(ndimage.label(m, np.ones((3, 3)))[1] for m in masks)
    n4 = sum(ndimage.label(m)[1] for m in masks)
    assert n4 > n8 > len(masks)


# ------------------------------------------------------------------------------------------------ AUROC
@pytest.mark.parametrize("seed", range(6))
def test_image_auroc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    labels = (rng.random(n) < rng.uniform(0.1, 0.9)).astype(int)
    labels[:2] = [0, 1]
    scores = rng.random(n) + 0.3 * labels
    if seed % 2:
        scores = np.round(scores * 5) / 5  # ties
    assert image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
def test_pixel_auroc_matches_sklearn(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    masks, maps = random_set(rng, 4, 24, 31, levels=7 if seed % 2 else None)
    if seed == 5:  # more anomalous than normal pixels: the other branch of the pair counting
        masks = 1 - masks
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(masks, maps) == pytest.approx(expected, abs=1e-9)
    assert pixel_auroc(masks.astype(bool), maps.astype(np.float32)) == pytest.approx(
        roc_auc_score(masks.ravel(), maps.astype(np.float32).ravel()), abs=1e-9)


def test_auroc_hand_cases() -> None:
    # 2 positives {0.9, 0.5}, 2 negatives {0.5, 0.1}: pairs (0.9>0.5), (0.9>0.1), (0.5=0.5 -> 1/2),
    # (0.5>0.1) -> 3.5 / 4.
    assert image_auroc([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1]) == 0.875
    assert image_auroc([0, 1], [0.0, 1.0]) == 1.0
    assert image_auroc([0, 1], [1.0, 0.0]) == 0.0
    assert image_auroc([0, 1], [3.0, 3.0]) == 0.5
    assert pixel_auroc(np.eye(3), np.eye(3) * 2.0) == 1.0
    assert pixel_auroc(np.eye(3), 1 - np.eye(3)) == 0.0


# ---------------------------------------------------------------------------------------- PRO: oracles
CASES = [(seed, n, h, w, levels) for seed, (n, h, w, levels) in enumerate(
    [(3, 12, 12, None), (2, 16, 10, None), (4, 10, 14, 6), (3, 13, 13, 3), (1, 15, 15, None), (5, 8, 9, 10),
     (2, 20, 20, 25)])]


@pytest.mark.parametrize(("seed", "n", "h", "w", "levels"), CASES)
@pytest.mark.parametrize("limit", [0.3, 0.05, 0.5, 1.0])
def test_pro_mvtec_matches_oracle(seed: int, n: int, h: int, w: int, levels: int | None,
                                  limit: float) -> None:
    masks, maps = random_set(np.random.default_rng(seed), n, h, w, levels)
    expected = mvtec_pro_oracle(masks, maps, limit)
    assert pro_auc(masks, maps, limit, "mvtec") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("seed", "n", "h", "w", "levels"), CASES)
@pytest.mark.parametrize("limit", [0.3, 0.1, 1.0])
def test_pro_rd4ad_matches_oracle(seed: int, n: int, h: int, w: int, levels: int | None,
                                  limit: float) -> None:
    masks, maps = random_set(np.random.default_rng(1000 + seed), n, h, w, levels)
    expected = rd4ad_pro_oracle(masks, maps, limit)
    assert pro_auc(masks, maps, limit, "rd4ad") == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pro_matches_oracles_on_smooth_maps(dtype: type) -> None:
    # Smoothed maps like the real pipeline's (gaussian_filter): long runs of kept points.
    rng = np.random.default_rng(7)
    masks, maps = random_set(rng, 4, 32, 32)
    maps = np.stack([ndimage.gaussian_filter(m, 2.0) for m in maps]).astype(dtype)
    for limit in (0.3, 0.6):
        for variant, oracle in (("rd4ad", rd4ad_pro_oracle), ("mvtec", mvtec_pro_oracle)):
            assert pro_auc(masks, maps, limit, variant) == pytest.approx(oracle(masks, maps, limit), abs=1e-6)


@pytest.mark.parametrize("seed", range(40))
def test_values_in_unit_interval(seed: int) -> None:
    rng = np.random.default_rng(5000 + seed)
    masks, maps = random_set(rng, int(rng.integers(1, 5)), int(rng.integers(3, 20)), int(rng.integers(3, 20)),
                             levels=[None, 2, 5, 50][seed % 4], p_anomalous=rng.uniform(0.2, 1.0))
    if rng.random() < 0.3:
        maps = -maps  # inverted: low values
    limit = float(rng.choice([0.01, 0.1, 0.3, 0.7, 1.0]))
    for value in (pro_auc(masks, maps, limit, "mvtec"), pro_auc(masks, maps, limit, "rd4ad"),
                  pixel_auroc(masks, maps)):
        assert 0.0 <= value <= 1.0


# ------------------------------------------------------------------------------------- PRO: hand cases
# 4x4 image, one 2x2 region (4 pixels) and 12 normal pixels:
#   region scores 0.9, 0.8, 0.4, 0.2; normal scores 0.85, 0.5, 0.3 and nine times 0.1.
MASK_4X4 = np.array([[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]])
MAP_4X4 = np.array([[0.85, 0.5, 0.3, 0.1], [0.1, 0.9, 0.8, 0.1], [0.1, 0.4, 0.2, 0.1], [0.1, 0.1, 0.1, 0.1]])


def test_pro_mvtec_4x4_by_hand() -> None:
    # Descending scores -> (FPR, PRO): 0.9 (0, 1/4), 0.85 (1/12, 1/4), 0.8 (1/12, 2/4), 0.5 (2/12, 2/4),
    # 0.4 (2/12, 3/4), 0.3 (3/12, 3/4), 0.2 (3/12, 1), 0.1 (1, 1). Vertical steps add nothing; the
    # horizontal ones add (1/4 + 2/4 + 3/4) / 12 = 0.125 up to FPR 3/12, then PRO is 1 from 3/12 on.
    # limit 0.3: (0.125 + 0.05) / 0.3 = 7/12. limit 1: 0.125 + 0.75 = 0.875.
    assert pro_auc(MASK_4X4, MAP_4X4, 0.3, "mvtec") == pytest.approx(7 / 12, abs=1e-12)
    assert pro_auc(MASK_4X4, MAP_4X4, 1.0, "mvtec") == pytest.approx(0.875, abs=1e-12)
    # limit 0.1 falls inside the step 1/12 -> 2/12 at PRO 2/4:
    # (1/4 * 1/12 + 2/4 * (0.1 - 1/12)) / 0.1 = (1/48 + 1/120) / 0.1 = (7/240) / 0.1 = 7/24.
    assert pro_auc(MASK_4X4, MAP_4X4, 0.1, "mvtec") == pytest.approx(7 / 24, abs=1e-12)


def test_pro_rd4ad_4x4_by_hand() -> None:
    # Thresholds 0.1 + i * 0.004, i < 200. Between consecutive thresholds at most one score is crossed, so
    # the points are: (FPR, PRO) = (3/12, 1), (3/12, 3/4), (2/12, 3/4), (2/12, 2/4), (1/12, 2/4),
    # (1/12, 1/4), (0, 1/4), all kept (FPR < 0.3), x = FPR / (3/12) = 1, 2/3, 1/3, 0.
    # Area = 1/3 * 3/4 + 1/3 * 2/4 + 1/3 * 1/4 = 1/2.
    assert np.arange(0.1, 0.9, 0.8 / 200).size == 200
    assert pro_auc(MASK_4X4, MAP_4X4, 0.3, "rd4ad") == pytest.approx(0.5, abs=1e-12)
    assert pro_auc(MASK_4X4[None], MAP_4X4[None], 0.3, "rd4ad") == pytest.approx(0.5, abs=1e-12)


def test_normal_images_count_for_mvtec_only() -> None:
    # Add a normal 4x4 image scoring 0 everywhere: 28 normal pixels. MVTec steps: FPR 1/28, 2/28, 3/28 at
    # PRO 1/4, 2/4, 3/4, then PRO 1 from 3/28 to the limit: (1.5/28 + 0.3 - 3/28) / 0.3 = 23/28.
    masks = np.stack([MASK_4X4, np.zeros((4, 4))])
    maps = np.stack([MAP_4X4, np.zeros((4, 4))])
    assert pro_auc(masks, maps, 0.3, "mvtec") == pytest.approx(23 / 28, abs=1e-12)
    assert pro_auc(masks, maps, 0.3, "rd4ad") == pytest.approx(0.5, abs=1e-12)  # unchanged
    # A normal image scoring above everything only hurts MVTec too.
    maps[1] = 5.0
    assert pro_auc(masks, maps, 0.3, "rd4ad") == pytest.approx(0.5, abs=1e-12)
    assert pro_auc(masks, maps, 0.3, "mvtec") == 0.0  # its 16 pixels alone give FPR 16/28 > 0.3 at PRO 0


@pytest.mark.parametrize("variant", ["mvtec", "rd4ad"])
def test_perfect_and_inverted_maps(variant: str) -> None:
    mask = np.zeros((2, 6, 7))
    mask[0, 1:3, 1:4] = 1
    mask[0, 4, 5] = 1
    # Perfect: every anomalous pixel above every normal pixel. MVTec: PRO 1 at FPR 0. RD4AD: every kept FPR
    # is 0, so the value is the best PRO there, 1.
    assert pro_auc(mask, mask * 2.0, variant=variant) == 1.0
    graded = np.where(mask == 1, 1.0 + np.arange(84).reshape(2, 6, 7), 0.0)
    assert pro_auc(mask, graded, variant=variant) == 1.0
    # Inverted: every normal pixel above every anomalous one. MVTec: PRO stays 0 until FPR 1 -> 0.
    # RD4AD: all normals are predicted at every threshold, FPR = 1 is never kept -> 0.
    assert pro_auc(mask, 1.0 - mask, variant=variant) == 0.0


@pytest.mark.parametrize("variant", ["mvtec", "rd4ad"])
def test_regions_touching_at_a_corner_are_one_region(variant: str) -> None:
    # (0,0),(0,1) and (1,2) form ONE 8-connected region of 3 pixels (4-connectivity would give regions of
    # 2 and 1). Only (1,2) scores high, the 6 normals score 0.5, the rest of the region 0.
    # 8-connected: PRO = 1/3 at FPR 0, then FPR jumps to 1 -> MVTec 1/3; RD4AD: thresholds >= 0.5 have
    # FPR 0 and PRO 1/3, those below have FPR 1 -> best PRO at zero FPR, 1/3. (4-connected: 1/2.)
    mask = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]])
    amap = np.array([[0.0, 0.0, 0.5], [0.5, 0.5, 1.0], [0.5, 0.5, 0.5]])
    assert pro_auc(mask, amap, variant=variant) == pytest.approx(1 / 3, abs=1e-12)


def test_regions_are_weighted_equally() -> None:
    # Region A: 1 pixel scoring 1; region B: 8 pixels scoring 0; the 16 normal pixels score 0.5.
    # MVTec: PRO = 1/2 at FPR 0 (A found), then 1/2 until FPR 1 -> 1/2 (pixel-weighted would give 1/9).
    mask = np.zeros((5, 5))
    mask[0, 0] = 1
    mask[2:4, 1:5] = 1
    amap = np.where(mask == 1, 0.0, 0.5)
    amap[0, 0] = 1.0
    assert pro_auc(mask, amap, variant="mvtec") == pytest.approx(0.5, abs=1e-12)
    assert pro_auc(mask, amap, variant="rd4ad") == pytest.approx(0.5, abs=1e-12)


# -------------------------------------------------------------------------------- RD4AD degenerate rules
def test_rd4ad_constant_map_is_zero() -> None:
    masks = np.stack([MASK_4X4, MASK_4X4])
    maps = np.stack([MAP_4X4, np.full((4, 4), 0.7)])
    assert pro_auc(masks, maps, variant="rd4ad") == pytest.approx((0.5 + 0.0) / 2, abs=1e-12)


def test_rd4ad_image_without_normal_pixels() -> None:
    # Fully anomalous 2x2 image with scores 0..3: FPR taken as 0, best PRO (at threshold 0) = 3/4.
    masks = np.stack([np.ones((2, 2)), np.zeros((2, 2))])
    maps = np.stack([np.array([[0.0, 1.0], [2.0, 3.0]]), np.zeros((2, 2))])
    assert pro_auc(masks, maps, variant="rd4ad") == pytest.approx(0.75, abs=1e-12)


def test_rd4ad_single_kept_point_is_zero() -> None:
    # One row: anomalous pixel 1.0; normals 1.0, 4 x 0.993, 5 x 0.0. Thresholds 0.005 i: at 0.995 only the
    # two 1.0 pixels are above (FPR 1/10, PRO 1), at 0.99 and below FPR >= 5/10. One kept point -> 0.0.
    mask = np.array([[1] + [0] * 10])
    amap = np.array([[1.0, 1.0] + [0.993] * 4 + [0.0] * 5])
    assert pro_auc(mask, amap, variant="rd4ad") == 0.0
    assert pro_auc(mask, amap, fpr_limit=0.6, variant="rd4ad") > 0.0  # two kept points now


def test_two_dimensional_input_is_one_image() -> None:
    masks, maps = random_set(np.random.default_rng(3), 1, 12, 12)
    for variant in ("mvtec", "rd4ad"):
        assert pro_auc(masks[0], maps[0], variant=variant) == pro_auc(masks, maps, variant=variant)
    assert pixel_auroc(masks[0], maps[0]) == pixel_auroc(masks, maps)


# ------------------------------------------------------------------------------------------- bad inputs
def test_shape_mismatch() -> None:
    with pytest.raises(ValueError, match=r"masks \(2, 4, 4\) and maps \(2, 4, 5\)"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"masks \(4, 4\) and maps \(1, 4, 4\)"):
        pro_auc(np.zeros((4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"labels \(3,\) and scores \(4,\)"):
        image_auroc([0, 1, 1], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match="1-D"):
        image_auroc(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="N x H x W or H x W"):
        pro_auc(np.array([0, 1]), np.array([0.0, 1.0]))


def test_non_binary_masks() -> None:
    with pytest.raises(ValueError, match=r"binary.*\[0\.5, 2\.0\]"):
        pixel_auroc(np.array([[0, 1], [0.5, 2]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"binary.*\[-1\]"):
        pro_auc(np.array([[0, 1], [-1, 1]]), np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"labels must be binary.*\[2\]"):
        image_auroc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"binary.*nan"):
        pixel_auroc(np.array([[0, 1], [np.nan, 1]]), np.zeros((2, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_scores(bad: float) -> None:
    amap = np.array([[0.1, 0.2], [bad, 0.4]])
    mask = np.array([[0, 1], [0, 0]])
    with pytest.raises(ValueError, match="maps must be finite"):
        pixel_auroc(mask, amap)
    for variant in ("mvtec", "rd4ad"):
        with pytest.raises(ValueError, match="maps must be finite"):
            pro_auc(mask, amap, variant=variant)
    with pytest.raises(ValueError, match="scores must be finite"):
        image_auroc([0, 1, 0], [0.1, bad, 0.3])


def test_missing_class() -> None:
    with pytest.raises(ValueError, match="no anomalous image"):
        image_auroc([0, 0], [0.1, 0.2])
    with pytest.raises(ValueError, match="no normal image"):
        image_auroc([1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="no anomalous pixel"):
        pixel_auroc(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="no normal pixel"):
        pixel_auroc(np.ones((3, 3)), np.zeros((3, 3)))
    for variant in ("mvtec", "rd4ad"):
        with pytest.raises(ValueError, match="no anomalous pixel"):
            pro_auc(np.zeros((2, 3, 3)), np.zeros((2, 3, 3)), variant=variant)
        with pytest.raises(ValueError, match="no normal pixel"):
            pro_auc(np.ones((2, 3, 3)), np.zeros((2, 3, 3)), variant=variant)


def test_unknown_variant_and_bad_limit() -> None:
    with pytest.raises(ValueError, match="unknown PRO variant 'MVTec'.*mvtec, rd4ad"):
        pro_auc(MASK_4X4, MAP_4X4, variant="MVTec")
    for limit in (0.0, -0.1, 1.5, float("nan"), "0.3", None, True):
        with pytest.raises(ValueError, match=r"fpr_limit must be a number in \(0, 1\]"):
            pro_auc(MASK_4X4, MAP_4X4, fpr_limit=limit)  # type: ignore[arg-type]
    assert 0 < pro_auc(MASK_4X4, MAP_4X4, fpr_limit=np.float32(0.3)) <= 1
