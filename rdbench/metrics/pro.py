"""PRO (per-region overlap) up to an FPR limit, in its two definitions: MVTec AD's whole-set curve ("mvtec")
and the authors' per-image 200-threshold curve ("rd4ad"). See IMPLEMENTATION_FACTS.md, "Scoring and metrics"."""

from __future__ import annotations

import numbers

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from rdbench.metrics.checks import both_classes, maps_and_masks

__all__ = ["PRO_VARIANTS", "RD4AD_NUM_THRESHOLDS", "pro_auc"]

PRO_VARIANTS = ("mvtec", "rd4ad")
RD4AD_NUM_THRESHOLDS = 200  # num_th in the authors' compute_pro

_CONN8 = np.ones((3, 3), dtype=bool)  # 8-connectivity, as MVTec's label(structure) and skimage's default
# The same 8-connectivity inside each slice and none across slices: one label() call labels every image.
_CONN8_PER_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_CONN8_PER_IMAGE[1] = True


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
    m, a = maps_and_masks(masks, maps)
    both_classes(m, "pixel")
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
