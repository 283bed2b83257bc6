"""Anomaly-detection metrics: image AUROC, pixel AUROC and the two PRO (per-region overlap) variants.

Pure functions on numpy arrays. Anomaly maps are ``N x H x W`` floats, ground-truth masks ``N x H x W``
in {0, 1} (bool, int or float); a single ``H x W`` pair is treated as N = 1. Floating scores keep
their dtype (comparisons within float32 are exact, and sorting float32 is twice as fast as float64);
other scores become float64. Nothing is rounded here (the authors round to 3 decimals when printing:
a reporting choice). Definitions follow the project's paper notes (IMPLEMENTATION_FACTS.md,
"Scoring and metrics").
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

__all__ = ["PRO_VARIANTS", "RD4AD_NUM_THRESHOLDS", "image_auroc", "pixel_auroc", "pro_auc"]

PRO_VARIANTS = ("mvtec", "rd4ad")
RD4AD_NUM_THRESHOLDS = 200  # num_th in the authors' compute_pro

_CONN8 = np.ones((3, 3), dtype=bool)  # 8-connectivity, as MVTec's label(structure) and skimage's default
# The same 8-connectivity inside each slice and none across slices: one label() call labels every image.
_CONN8_PER_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_CONN8_PER_IMAGE[1] = True


# ---------------------------------------------------------------------------------------------- validation
def _finite(name: str, a: ArrayLike) -> np.ndarray:
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float64)
    bad = ~np.isfinite(a)
    if bad.any():
        n_nan = int(np.isnan(a).sum())
        raise ValueError(f"{name} must be finite; found {n_nan} NaN and {int(bad.sum()) - n_nan} inf values")
    return a


def _binary(name: str, a: np.ndarray) -> np.ndarray:
    if a.dtype == bool:
        return a
    ok = (a == 0) | (a == 1)
    if not ok.all():
        found = np.unique(a[~ok])
        more = f" (and {found.size - 10} more)" if found.size > 10 else ""
        raise ValueError(f"{name} must be binary (0/1); found other values {found[:10].tolist()}{more}")
    return a == 1


def _both_classes(y: np.ndarray, what: str) -> None:
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        raise ValueError(f"no anomalous {what} (all ground truth is 0): the metric is undefined")
    if n_pos == y.size:
        raise ValueError(f"no normal {what} (all ground truth is 1): the metric is undefined")


def _maps_and_masks(masks: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m, a = np.asarray(masks), np.asarray(maps)
    if m.shape != a.shape:
        raise ValueError(f"masks and maps must have the same shape; got masks {m.shape} and maps {a.shape}")
    if m.ndim not in (2, 3):
        raise ValueError(f"masks/maps must be N x H x W or H x W; got a {m.ndim}-D shape {m.shape}")
    if m.ndim == 2:
        m, a = m[None], a[None]
    return _binary("masks", m), _finite("maps", a)


# ------------------------------------------------------------------------------------------------- AUROC
def _auroc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + P(pos == neg) / 2 (Mann-Whitney), which is exactly the ROC area sklearn computes.

    Sorting values (no argsort) and locating the smaller set in the larger one is several times faster
    than sklearn's roc_auc_score on millions of pixels, and the pair counts are exact integers.
    """
    flip = pos.size > neg.size
    small, large = (np.sort(neg), np.sort(pos)) if flip else (np.sort(pos), np.sort(neg))
    lo = np.searchsorted(large, small, side="left")
    hi = np.searchsorted(large, small, side="right")
    below, ties, total = int(lo.sum()), int((hi - lo).sum()), pos.size * neg.size
    wins2 = 2 * (total - below - ties) + ties if flip else 2 * below + ties  # twice the U statistic
    return wins2 / (2 * total)


def image_auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    """ROC AUC of per-image scores against labels (1 = anomalous); equals sklearn's roc_auc_score."""
    y, s = np.asarray(labels), np.asarray(scores)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"labels and scores must be 1-D of equal length; got labels {y.shape} and scores {s.shape}")
    y, s = _binary("labels", y), _finite("scores", s)
    _both_classes(y, "image")
    return _auroc(s[y], s[~y])


def pixel_auroc(masks: ArrayLike, maps: ArrayLike) -> float:
    """ROC AUC over all pixels of all images (mask 1 = anomalous pixel); equals sklearn's roc_auc_score."""
    m, a = _maps_and_masks(masks, maps)
    _both_classes(m, "pixel")
    return _auroc(a[m], a[~m])


# --------------------------------------------------------------------------------------------------- PRO
def pro_auc(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = 0.3, variant: str = "mvtec") -> float:
    """Normalised area under the PRO-vs-FPR curve, in [0, 1]. Regions are 8-connected components of masks.

    ``variant="mvtec"`` -- MVTec AD's official definition (``generic_util.compute_pro`` + ``trapezoid``):
    one curve over ALL images, normal ones included. Every region carries weight 1/num_regions (of the
    whole set), spread evenly over its pixels. The exact curve has one point per distinct score t,
    taken in descending order: FPR(t) = (# normal pixels with score >= t) / (# normal pixels) and
    PRO(t) = mean over regions of the fraction of its pixels with score >= t (tied scores give one point),
    padded with (0, 0) in front and (1, 1) at the end. The result is the trapezoid area up to FPR = fpr_limit,
    with the PRO value at exactly fpr_limit linearly interpolated on the segment that crosses it, divided
    by fpr_limit. FPRs are float64 here (MVTec casts them to float32: differences up to ~1e-7).
    Only the curve up to the first point past fpr_limit is built, as nothing beyond it enters the area.

    ``variant="rd4ad"`` -- the authors' code (hq-deng/RD4AD test.py: ``evaluation`` calls ``compute_pro``
    once per anomalous test image, batch size 1, then takes ``np.mean``). Normal images (mask all 0)
    never contribute. (The authors pick images by dataset label; the two agree on every run their code
    completes, since their compute_pro asserts that the mask holds both 0 and 1.)
    For one anomalous image with scores s: thresholds
    ``np.arange(s.min(), s.max(), (s.max() - s.min()) / 200)`` (float64, as their maps; usually 200
    values, 201 when float rounding says so); for each threshold th, predicted = s > th,
    PRO = mean over the image's regions of (region pixels predicted) / (region area),
    FPR = (normal pixels predicted) / (normal pixels of that image). Keep the points with
    FPR < fpr_limit (strictly), divide the kept FPRs by their maximum (not by fpr_limit), and take the
    trapezoid area in threshold order (= sklearn.metrics.auc). The per-image areas are averaged.
    Where the authors' code fails or returns NaN, this defines, per image:
      * constant map (max == min: arange has step 0 and raises there) -> 0.0 (no threshold, empty curve);
      * no kept point (FPR >= fpr_limit at every threshold) -> 0.0 (the curve never enters the range);
      * largest kept FPR == 0 (0/0 there) -> the largest kept PRO, i.e. the PRO reached without any false
        positive, held across the whole normalised range (a map that ranks every anomalous pixel above
        every normal pixel scores 1.0);
      * exactly one kept point with FPR > 0 -> 0.0 (trapezoid over a single point);
      * image without a normal pixel (FPR 0/0) -> FPR is taken as 0 at every threshold (so the rule
        above applies).

    Raises ValueError for mismatched shapes, non-binary masks, non-finite maps, masks without any
    anomalous or without any normal pixel, an unknown variant, or fpr_limit outside (0, 1].
    """
    if variant not in PRO_VARIANTS:
        raise ValueError(f"unknown PRO variant {variant!r}; valid variants: {', '.join(PRO_VARIANTS)}")
    if isinstance(fpr_limit, bool) or not isinstance(fpr_limit, numbers.Real) or not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be a number in (0, 1]; got {fpr_limit!r}")
    m, a = _maps_and_masks(masks, maps)
    _both_classes(m, "pixel")
    if variant == "mvtec":
        return _pro_mvtec(m, a, float(fpr_limit))
    per_image = [_pro_rd4ad_image(mi, ai, float(fpr_limit)) for mi, ai in zip(m, a, strict=True) if mi.any()]
    return float(np.mean(per_image))


def _pro_mvtec(masks: np.ndarray, maps: np.ndarray, limit: float) -> float:
    labels, n_regions = ndimage.label(masks, structure=_CONN8_PER_IMAGE)
    labels, scores = labels.ravel(), maps.ravel()
    is_neg = labels == 0
    neg, n_neg = scores[is_neg], int(is_neg.sum())
    region_weight = 1.0 / (np.bincount(labels)[1:] * n_regions)  # per-pixel PRO increment of each region

    # Only points up to the first one with FPR > limit matter. Its threshold is at most the m-th largest
    # normal score, m the smallest count with m / n_neg > limit, so drop normal scores below that: sorting
    # ~limit of the normal pixels instead of all of them (np.partition is linear).
    m = max(int(limit * n_neg) - 1, 1)
    while m <= n_neg and m / n_neg <= limit:
        m += 1
    if m <= n_neg:
        neg = neg[neg >= np.partition(neg, n_neg - m)[n_neg - m]]
    neg = np.sort(neg)[::-1]
    run_end = np.append(neg[1:] != neg[:-1], True)  # last of each run of tied scores
    t = neg[run_end]  # distinct normal scores, descending: the only places where FPR moves
    fpr = (np.flatnonzero(run_end) + 1) / n_neg

    # Anomalous pixels: cumulative PRO over the top-k scores; the few of them make argsort cheap.
    pos = scores[~is_neg]
    order = np.argsort(pos)
    pos = pos[order]
    cum = np.concatenate(([0.0], np.cumsum(region_weight[labels[~is_neg][order][::-1] - 1])))
    t_asc = t[::-1]  # searchsorted is fastest with ascending keys
    lo = np.minimum(cum[pos.size - np.searchsorted(pos, t_asc, side="right")[::-1]], 1.0)  # PRO(score > t)
    hi = np.minimum(cum[pos.size - np.searchsorted(pos, t_asc, side="left")[::-1]], 1.0)  # PRO(score >= t)

    # The curve is a staircase: vertical runs at constant FPR (anomalous-only scores, zero area) and one
    # segment per distinct normal score t, from (previous FPR, PRO(> t)) to (FPR(t), PRO(>= t)); the
    # (1, 1) padding only adds zero-width area. MVTec's trapezoid is therefore the sum over segments.
    x0 = np.concatenate(([0.0], fpr[:-1]))
    full = fpr <= limit
    area = float(np.sum((0.5 * (lo + hi) * (fpr - x0))[full]))
    if not full.all():  # the segment crossing the limit: PRO at the limit interpolated linearly
        j = int(np.argmin(full))
        y = lo[j] + (hi[j] - lo[j]) * (limit - x0[j]) / (fpr[j] - x0[j])
        area += 0.5 * (lo[j] + y) * (limit - x0[j])
    return min(area / limit, 1.0)  # the exact value is <= 1; only float rounding can exceed it


def _pro_rd4ad_image(mask: np.ndarray, amap: np.ndarray, limit: float) -> float:
    amap = amap.astype(np.float64, copy=False)  # the authors' maps are float64, so are their thresholds
    lo, hi = amap.min(), amap.max()
    if hi == lo:
        return 0.0
    ths = np.arange(lo, hi, (hi - lo) / RD4AD_NUM_THRESHOLDS)  # exactly the authors' call, float64
    n_t = ths.size
    labels, n_regions = ndimage.label(mask, structure=_CONN8)
    # Instead of relabelling per threshold: a pixel exceeds ths[j] iff j < k, k = number of thresholds
    # strictly below its score (ths ascends). Histogram k per group (0 = normal, r = region r), then a
    # reversed cumulative sum gives every group's count above every threshold at once.
    k = np.searchsorted(ths, amap.ravel(), side="left")
    hist = np.bincount(labels.ravel() * (n_t + 1) + k, minlength=(n_regions + 1) * (n_t + 1))
    hist = hist.reshape(n_regions + 1, n_t + 1)
    above = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # above[g, j] = #(group g, score > ths[j])
    sizes = hist.sum(axis=1)
    pro = (above[1:] / sizes[1:, None]).mean(axis=0)
    fpr = above[0] / sizes[0] if sizes[0] else np.zeros(n_t)
    keep = fpr < limit
    fpr, pro = fpr[keep], pro[keep]
    if fpr.size == 0:
        return 0.0
    if fpr.max() == 0:
        return float(pro.max())
    x = fpr / fpr.max()
    # Thresholds ascend, so x does not increase: sklearn's auc integrates with direction -1. A single
    # point gives an empty sum, 0.0.
    return float(np.sum(0.5 * (pro[1:] + pro[:-1]) * (x[:-1] - x[1:])))
