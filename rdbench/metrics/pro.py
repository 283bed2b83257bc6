"""PRO (per-region overlap) up to an FPR limit, in its two definitions: MVTec AD's whole-set curve ("mvtec")
and the authors' per-image 200-threshold curve ("rd4ad"); docs/parity.md says where each comes from."""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from rdbench.metrics.checks import both_classes, maps_and_masks, to_binary, to_finite

__all__ = ["PRO_RESOLUTIONS", "PRO_VARIANTS", "RD4AD_NUM_THRESHOLDS", "pro_auc", "pro_per_image", "resize_bilinear"]

PRO_VARIANTS = ("mvtec", "rd4ad")
PRO_RESOLUTIONS = ("map", "mask")  # the maps' own (evaluation) resolution, or each mask's (full) one
RD4AD_NUM_THRESHOLDS = 200  # num_th in the authors' compute_pro

_CONN8 = np.ones((3, 3), dtype=bool)  # 8-connectivity, as MVTec's label(structure) and skimage's default
# The same 8-connectivity inside each slice and none across slices: one label() call labels every image.
_CONN8_PER_IMAGE = np.zeros((3, 3, 3), dtype=bool)
_CONN8_PER_IMAGE[1] = True


def pro_auc(masks: ArrayLike | Sequence[ArrayLike], maps: ArrayLike, fpr_limit: float = 0.3, variant: str = "mvtec",
            resolution: str = "map") -> float:
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

    ``resolution="mask"`` -- the same at the masks' own resolution, as MVTec's evaluation script computes it
    (it takes maps of the original image size): ``masks`` is a sequence of N 2-D masks, sizes free (a 3-D
    array is N masks of one size), ``maps`` is N x h x w at evaluation resolution, and map i is first
    resized bilinearly to mask i's size with ``resize_bilinear`` (align_corners=False: the grid of
    torch.nn.functional.interpolate(mode="bilinear") by default; a pipeline that upsamples otherwise,
    e.g. with align_corners=True, resizes itself and passes maps and masks of equal sizes). "mvtec" then
    takes one curve over all the images' pixels, "rd4ad" one per image. All upsampled maps are held at
    once, as in MVTec's script (100 masks of 1024^2: ~0.4 GB of float32 scores, more for the sort).

    Raises ValueError for mismatched shapes, non-binary masks, non-finite maps, masks without any
    anomalous or without any normal pixel, an unknown variant or resolution, or fpr_limit outside (0, 1].
    """
    if variant not in PRO_VARIANTS:
        raise ValueError(f"unknown PRO variant {variant!r}; valid variants: {', '.join(PRO_VARIANTS)}")
    if resolution not in PRO_RESOLUTIONS:
        raise ValueError(f"unknown PRO resolution {resolution!r}; valid resolutions: {', '.join(PRO_RESOLUTIONS)}")
    limit = _check_limit(fpr_limit)
    if resolution == "mask":
        return _pro_at_mask_size(masks, maps, limit, variant)
    m, a = maps_and_masks(masks, maps)
    both_classes(m, "pixel")
    if variant == "mvtec":
        labels, n_regions = ndimage.label(m, structure=_CONN8_PER_IMAGE)
        return _pro_mvtec(labels.ravel(), a.ravel(), n_regions, limit)
    return float(np.nanmean(_per_image(m, a, limit)))


def pro_per_image(masks: ArrayLike, maps: ArrayLike, fpr_limit: float = 0.3) -> np.ndarray:
    """The RD4AD variant's per-image values (N,), NaN for images without an anomalous pixel: pro_auc with
    variant="rd4ad" is their nanmean, so a bootstrap over anomalous images can resample them."""
    m, a = maps_and_masks(masks, maps)
    both_classes(m, "pixel")
    return _per_image(m, a, _check_limit(fpr_limit))


def resize_bilinear(amap: ArrayLike, size: tuple[int, int], align_corners: bool = False) -> np.ndarray:
    """A 2-D map resized to ``size`` = (H, W) by bilinear interpolation, with exactly the sampling grid of
    torch.nn.functional.interpolate(mode="bilinear", antialias=False): output pixel i reads the input at
    (i + 0.5) * in / out - 0.5 (clamped at 0) when align_corners is False, at i * (in - 1) / (out - 1)
    when True; neighbours past the border repeat the last row/column. Computed in float64 (rows, then
    columns), returned in the map's floating dtype (float64 for other dtypes). Values equal torch's to
    float rounding (a few ulp in float64); which upsampled values tie exactly can differ in the last bit."""
    a = np.asarray(amap)
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.float64
    if a.ndim != 2 or len(size) != 2 or min(size) < 1:
        raise ValueError(f"resize_bilinear needs a 2-D map and a size (H, W) >= 1; got {a.shape} and {size}")
    (i0, i1, wi), (j0, j1, wj) = (_linear_taps(n, int(m), align_corners) for n, m in zip(a.shape, size))
    a = a.astype(np.float64, copy=False)
    rows = a[i0] * (1 - wi)[:, None] + a[i1] * wi[:, None]
    return (rows[:, j0] * (1 - wj) + rows[:, j1] * wj).astype(dtype, copy=False)


def _linear_taps(n_in: int, n_out: int, align_corners: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    i = np.arange(n_out, dtype=np.float64)
    if align_corners:
        src = i * ((n_in - 1) / (n_out - 1)) if n_out > 1 else np.zeros(n_out)
    else:
        src = np.maximum((i + 0.5) * (n_in / n_out) - 0.5, 0.0)  # torch clamps negative sources to 0
    lo = np.minimum(src.astype(np.int64), n_in - 1)  # floor: src >= 0
    return lo, np.minimum(lo + 1, n_in - 1), src - lo


def _check_limit(fpr_limit: float) -> float:
    if isinstance(fpr_limit, bool) or not isinstance(fpr_limit, numbers.Real) or not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be a number in (0, 1]; got {fpr_limit!r}")
    return float(fpr_limit)


def _per_image(m: np.ndarray, a: np.ndarray, limit: float) -> np.ndarray:
    return np.array([_pro_rd4ad_image(mi, ai, limit) if mi.any() else np.nan for mi, ai in zip(m, a)])


def _pro_at_mask_size(masks: ArrayLike | Sequence[ArrayLike], maps: ArrayLike, limit: float, variant: str) -> float:
    a = np.asarray(maps)
    if a.ndim != 3 or len(masks) != len(a):
        raise ValueError("resolution='mask' needs maps N x h x w and N masks; "
                         f"got maps {a.shape} and {len(masks)} masks")
    a = to_finite("maps", a)
    ms = [to_binary("masks", np.asarray(m)) for m in masks]
    if any(m.ndim != 2 for m in ms):
        raise ValueError(f"each mask must be 2-D (H x W); got shapes {sorted({m.shape for m in ms})}")
    both_classes(np.concatenate([m.ravel() for m in ms]), "pixel")
    big = [resize_bilinear(ai, m.shape) for ai, m in zip(a, ms)]
    if variant == "rd4ad":
        return float(np.mean([_pro_rd4ad_image(m, b, limit) for m, b in zip(ms, big) if m.any()]))
    labels, offset = [], 0  # regions numbered across images, as one label() call over a stack would
    for m in ms:
        lab, n = ndimage.label(m, structure=_CONN8)
        labels.append(np.where(lab > 0, lab + offset, 0).ravel())
        offset += n
    return _pro_mvtec(np.concatenate(labels), np.concatenate([b.ravel() for b in big]), offset, limit)


def _pro_mvtec(labels: np.ndarray, scores: np.ndarray, n_regions: int, limit: float) -> float:
    """MVTec's curve from flat per-pixel region labels (0 = normal, regions 1..n_regions) and scores."""
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
