"""95% intervals by a seeded bootstrap over test images, paired differences of two runs, DeLong's test.

Resampling: stratified by image label. Each resample draws the normal images with replacement (as many as
there are) and, independently, the anomalous ones, so the class counts never change; a resample is a
vector of multiplicities w (one per image). Intervals are percentile intervals (numpy's linear quantiles
of the resampled values at (1 - level) / 2 and (1 + level) / 2).

* Image metrics are exact: the resampled set's AUROC / AP / F1-max, duplicated images counting as tied
  scores (bins = the distinct image scores, all tied: exactly the metrics of ap.py and auroc.py).
* Pixel metrics resample whole images, never pixels: a ``ScoreSummary`` holds per-image histograms of
  normal and anomalous pixel scores on common bins, so a resample's counts are w @ histograms. Bins (about
  n_bins, default 4,096) are cut from a grid of 2**20 equal cells over the category's score range:
  3/8 of them of equal normal-pixel mass, 3/8 of equal anomalous-pixel mass, 1/4 of equal pixel mass
  among the top pixels (4 x those at or above the set's best-F1 threshold); each bin centred on its
  mass, a cell heavier than 1 / n_bins of all pixels a bin of its own, empty bins merged away. So the
  resolution follows both classes and the F1 optimum whatever the range. A bin holding a single distinct
  score is flagged tied and is exact; another enters AP at its midpoint (ap_f1_from_counts) and AUROC
  with its normal-anomalous pairs counted half.
  Error of binning vs the exact metric of the same (resampled) images: pixel AUROC <= sum over untied
  bins of pos * neg / (2 P N) (``ScoreSummary.pixel_auroc_error_bound``, 1e-6 to 1e-4); F1-max is a
  maximum over fewer thresholds, never above the exact value, and first order in the pixels per bin near
  the optimum; AP is second order but for the within-bin trend of the classes' ratio. Measured in
  tests/test_metrics_extended.py (asserted < 1e-3, the issue's 0.1 point): on 100 x 256^2 categories
  (~4e4 anomalous pixels) <= 4e-8 (AUROC), 3e-8 (AP), 3e-5 (F1-max); on small ones (2-4e3 anomalous
  pixels, 40 x 96^2), resamples included, up to 2e-6, 7.6e-4 (AP of a weak detector, AP 0.13) and 6.3e-4.
  The error falls about as 1 / n_bins (2,048 bins: up to 1.1e-3 on those small categories).
* PRO: the RD4AD variant is a mean of per-anomalous-image values, resampled exactly (weighted mean). The
  MVTec variant (one curve over all pixels) has no per-image decomposition and no interval here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy.stats import rankdata

from rdbench.metrics.ap import ap_f1_from_counts
from rdbench.metrics.checks import both_classes, maps_and_masks, to_binary, to_finite
from rdbench.metrics.pro import pro_per_image

__all__ = ["INTERVAL_METRICS", "DeLong", "Interval", "ScoreSummary", "bootstrap_intervals", "delong_test",
           "metric_values", "paired_bootstrap_diff", "resample_weights", "summarize"]

INTERVAL_METRICS = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pro_rd4ad")
SUMMARY_FORMAT = "rdbench.scores/1"
_CELLS = 2**20  # fine grid the bins are cut from
_CHUNK = 256  # resamples per block: (block x bins) float64 arrays stay a few MB


class Interval(NamedTuple):
    estimate: float  # the value on the test set itself (binned for pixel metrics); B - A for a difference
    low: float
    high: float


class DeLong(NamedTuple):
    auc_a: float
    auc_b: float
    z: float  # (auc_b - auc_a) / its standard error
    p: float  # two-sided


@dataclass(frozen=True, eq=False)
class ScoreSummary:
    """What intervals and comparisons need of one run on one category, without its model or maps.
    ``labels`` (N,) int8 and ``image_scores`` (N,) float64; optionally ``edges`` (K + 1,) float64 (bin k
    holds scores in [edges[k], edges[k+1]), the last bin closed), ``tied`` (K,) bool, ``normal_counts`` and
    ``anomalous_counts`` (N, K) int32 (each image's pixels per bin), ``pro`` (N,) float64 (RD4AD PRO per
    image, NaN for images without an anomalous pixel)."""

    labels: np.ndarray
    image_scores: np.ndarray
    edges: np.ndarray | None = None
    tied: np.ndarray | None = None
    normal_counts: np.ndarray | None = None
    anomalous_counts: np.ndarray | None = None
    pro: np.ndarray | None = None

    @property
    def metrics(self) -> tuple[str, ...]:
        has_pixels, has_pro = self.normal_counts is not None, self.pro is not None
        return tuple(m for m in INTERVAL_METRICS if m.startswith("image") or (has_pixels and m.startswith("pixel"))
                     or (has_pro and m == "pro_rd4ad"))

    def pixel_auroc_error_bound(self) -> float:
        """Largest possible |binned - exact| pixel AUROC: untied bins' pairs are counted half."""
        pos, neg = self.anomalous_counts.sum(0), self.normal_counts.sum(0)
        return float(np.sum((pos * neg.astype(np.float64))[~self.tied]) / (2.0 * pos.sum() * neg.sum()))

    def to_npz(self, path: str | Path) -> None:
        """Write a compressed .npz (e.g. a sidecar beside a record); absent fields are left out."""
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}
        np.savez_compressed(path, format=np.array(SUMMARY_FORMAT), **arrays)

    @classmethod
    def from_npz(cls, path: str | Path) -> ScoreSummary:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z or str(z["format"]) != SUMMARY_FORMAT:
                raise ValueError(f"{path} is not a score summary of format {SUMMARY_FORMAT}")
            return cls(**{f.name: z[f.name] for f in fields(cls) if f.name in z})


def summarize(labels: ArrayLike, image_scores: ArrayLike, masks: ArrayLike | None = None,
              maps: ArrayLike | None = None, n_bins: int = 4096, pro_fpr_limit: float | None = 0.3
              ) -> ScoreSummary:
    """A run's ScoreSummary: labels and image scores; with masks and maps (N x H x W) also the pixel
    histograms (about ``n_bins`` bins, see the module) and, unless pro_fpr_limit is None, the per-image
    RD4AD PRO values."""
    y, s = np.asarray(labels), np.asarray(image_scores)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels and scores must be 1-D of equal length; got labels {y.shape} and scores {s.shape}")
    y, s = to_binary("labels", y), to_finite("scores", s).astype(np.float64)
    both_classes(y, "image")
    if masks is None or maps is None:
        return ScoreSummary(y.astype(np.int8), s)
    if isinstance(n_bins, bool) or not isinstance(n_bins, int) or n_bins < 2:
        raise ValueError(f"n_bins must be an integer >= 2; got {n_bins!r}")
    m, a = maps_and_masks(masks, maps)
    if len(m) != y.size:
        raise ValueError(f"{y.size} labels but {len(m)} masks/maps")
    both_classes(m, "pixel")
    edges, tied, coarse = _bins(m, a, n_bins)
    k = edges.size - 1
    key = (np.arange(len(m)).repeat(m[0].size) * 2 + m.ravel()) * k + coarse
    hist = np.bincount(key, minlength=len(m) * 2 * k).reshape(len(m), 2, k).astype(np.int32)
    pro = None if pro_fpr_limit is None else pro_per_image(m, a, pro_fpr_limit)
    return ScoreSummary(y.astype(np.int8), s, edges, tied, hist[:, 0], hist[:, 1], pro)


def _bins(m: np.ndarray, a: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(edges, tied, bin of each pixel). Bins are runs of fine cells cut on per-cell histograms (a lookup
    per cell, then one gather per pixel: no search over the pixels)."""
    x, pos = a.ravel().astype(np.float64), m.ravel()
    lo, hi = float(x.min()), float(x.max())
    width = (hi - lo) / _CELLS if hi > lo else 1.0
    cell = np.minimum(((x - lo) / width).astype(np.int64), _CELLS - 1)
    normal, anomalous = (np.bincount(cell[c], minlength=_CELLS) for c in (~pos, pos))
    total = normal + anomalous
    heavy = np.flatnonzero(total > x.size / n_bins)
    # The pixels at or above the best F1 threshold (on the cells) and as many again: F1-max, a maximum,
    # needs fine bins there (its binning error is first order in the normal pixels per bin).
    tp, fp = np.cumsum(anomalous[::-1]), np.cumsum(normal[::-1])  # from the top
    best = int(np.argmax(tp / (tp + fp + tp[-1])))
    top = np.cumsum(total[::-1])
    zone = _CELLS - np.searchsorted(top, min(4 * top[best], top[-1]), side="left") - 1
    starts = np.concatenate([[0], heavy, heavy + 1,  # a heavy cell (many tied pixels) is a bin of its own
                             _centred(np.cumsum(normal), 3 * n_bins // 8),
                             _centred(np.cumsum(anomalous), 3 * n_bins // 8),
                             zone + _centred(np.cumsum(total[zone:]), n_bins // 4)])
    starts = np.unique(starts[starts < _CELLS])
    starts = starts[np.add.reduceat(total, starts) > 0]  # merge empty bins into the one below (bin 0 holds lo)
    coarse = (np.searchsorted(starts, np.arange(_CELLS), side="right") - 1)[cell]
    lowest, highest = np.full(starts.size, np.inf), np.full(starts.size, -np.inf)
    np.minimum.at(lowest, coarse, x)  # float64 ufunc.at is fast; float32 is not
    np.maximum.at(highest, coarse, x)
    return np.append(lo + starts * width, hi), lowest == highest, coarse


def _centred(cum: np.ndarray, k: int) -> np.ndarray:
    """Bin starts (cells) for k bins of equal mass of the histogram whose cumulative sum is cum, each
    bin centred on its mass: a start halfway between the cells of consecutive mass centres. (Starting bins
    right after a quantile cell would put a sparse class at the top of its bins, biasing the midpoint.)"""
    centres = np.searchsorted(cum, (np.arange(k) + 0.5) * (cum[-1] / k), side="left")
    return (centres[1:] + centres[:-1] + 1) // 2


def resample_weights(labels: ArrayLike, n_resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_resamples, N) int32 multiplicities of a stratified bootstrap: per resample, normal images drawn
    with replacement (their count kept), then anomalous ones, from np.random.default_rng(seed)."""
    y = to_binary("labels", np.asarray(labels))
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1; got {n_resamples!r}")
    rng, n = np.random.default_rng(seed), y.size
    w = np.zeros(n_resamples * n, dtype=np.int64)
    rows = np.arange(n_resamples)[:, None] * n
    for members in (np.flatnonzero(~y), np.flatnonzero(y)):
        picked = members[rng.integers(0, members.size, size=(n_resamples, members.size))]
        w += np.bincount((rows + picked).ravel(), minlength=w.size)
    return w.reshape(n_resamples, n).astype(np.int32)


def _auroc_from_counts(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    below = np.cumsum(neg, axis=-1) - neg  # normal items in lower bins; those in the same bin count half
    return np.sum(pos * (below + 0.5 * neg), axis=-1) / (pos.sum(-1) * neg.sum(-1))


def _values(s: ScoreSummary, w: np.ndarray, wanted: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Each wanted metric for each row of multiplicities w (rows, N)."""
    w, y, out = w.astype(np.float64), s.labels.astype(bool), {}
    groups = []
    if any(m.startswith("image") for m in wanted):
        distinct, inverse = np.unique(s.image_scores, return_inverse=True)
        onehot = np.zeros((y.size, distinct.size))
        onehot[np.arange(y.size), inverse] = 1.0
        groups.append(("image", (w * y) @ onehot, (w * ~y) @ onehot, True))
    if any(m.startswith("pixel") for m in wanted):  # integer sums below 2**53: float64 matmul is exact
        groups.append(("pixel", w @ s.anomalous_counts.astype(np.float64),
                       w @ s.normal_counts.astype(np.float64), s.tied))
    for name, pos, neg, tied in groups:
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"{name}_auroc"] = _auroc_from_counts(pos, neg)
        out[f"{name}_ap"], out[f"{name}_f1_max"] = ap_f1_from_counts(pos, neg, tied)
    if "pro_rd4ad" in wanted:
        ok = np.isfinite(s.pro)
        out["pro_rd4ad"] = (w[:, ok] @ s.pro[ok]) / w[:, ok].sum(1)
    return {m: out[m] for m in wanted}


def metric_values(summary: ScoreSummary, weights: ArrayLike, metrics: tuple[str, ...] | list[str] | None = None
                  ) -> dict[str, np.ndarray]:
    """Each metric (default: all the summary allows) for each row of image multiplicities ``weights``
    (R, N): row r is the test set with image i counted weights[r, i] times (a row of ones: the test set
    itself; resample_weights gives bootstrap rows). Returns metric -> (R,) float64."""
    wanted = _wanted(summary.metrics, metrics)
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != summary.labels.size or (w < 0).any():
        raise ValueError(f"weights must be R x {summary.labels.size} and non-negative; got shape {w.shape}")
    blocks = [_values(summary, w[i:i + _CHUNK], wanted) for i in range(0, len(w), _CHUNK)]
    return {m: np.concatenate([b[m] for b in blocks]) for m in wanted}


def _wanted(available: tuple[str, ...], metrics: tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    if metrics is None:
        return available
    bad = [m for m in metrics if m not in available]
    if bad:
        raise ValueError(f"no interval for {', '.join(bad)}; available: {', '.join(available)}")
    return tuple(metrics)


def _interval(estimate: float, values: np.ndarray, level: float) -> Interval:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level!r}")
    low, high = np.nanquantile(values, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(low), float(high))


def bootstrap_intervals(summary: ScoreSummary, n_resamples: int = 1000, seed: int = 0, level: float = 0.95,
                        metrics: tuple[str, ...] | list[str] | None = None) -> dict[str, Interval]:
    """Percentile interval of each metric (default: all the summary allows) over stratified resamples."""
    wanted = _wanted(summary.metrics, metrics)
    point = metric_values(summary, np.ones((1, summary.labels.size)), wanted)
    boot = metric_values(summary, resample_weights(summary.labels, n_resamples, seed), wanted)
    return {m: _interval(point[m][0], boot[m], level) for m in wanted}


def paired_bootstrap_diff(a: ScoreSummary, b: ScoreSummary, n_resamples: int = 1000, seed: int = 0,
                          level: float = 0.95, metrics: tuple[str, ...] | list[str] | None = None
                          ) -> dict[str, Interval]:
    """B - A on the same test images: its value and percentile interval, both runs evaluated on the SAME
    resampled images each time (so what the image draw does to both cancels). Raises ValueError unless
    both summaries have the same labels in the same order (the caller checks that they are the same
    images, e.g. by data fingerprint)."""
    if a.labels.shape != b.labels.shape or not np.array_equal(a.labels, b.labels):
        raise ValueError("a and b must score the same test images in the same order; their labels differ")
    wanted = _wanted(tuple(m for m in a.metrics if m in b.metrics), metrics)
    one = np.ones((1, a.labels.size))
    pa, pb = metric_values(a, one, wanted), metric_values(b, one, wanted)
    w = resample_weights(a.labels, n_resamples, seed)
    ra, rb = metric_values(a, w, wanted), metric_values(b, w, wanted)
    return {m: _interval(pb[m][0] - pa[m][0], rb[m] - ra[m], level) for m in wanted}


def delong_test(labels: ArrayLike, scores_a: ArrayLike, scores_b: ArrayLike) -> DeLong:
    """DeLong, DeLong & Clarke-Pearson (1988) test of two correlated ROC AUCs on the same images, computed
    with midranks (Sun & Xu 2014). With m anomalous and n normal images, the structural components are
    V10_i = (share of normal images scored below anomalous image i, ties half) and V01_j = (share of
    anomalous images scored above normal image j, ties half); the AUCs' covariance is
    cov(V10) / m + cov(V01) / n (sample covariances, ddof 1), z = (auc_b - auc_a) / sqrt(var(b - a)) and
    p = 2 (1 - Phi(|z|)). A zero variance (e.g. identical scores) gives z = 0, p = 1 if the AUCs are
    equal, else z = +-inf, p = 0. Needs at least 2 images of each class."""
    y, sa, sb = np.asarray(labels), np.asarray(scores_a), np.asarray(scores_b)
    if y.ndim != 1 or sa.shape != y.shape or sb.shape != y.shape:
        raise ValueError(f"labels and both scores must be 1-D of equal length; got {y.shape}, {sa.shape}, {sb.shape}")
    y = to_binary("labels", y)
    s = np.stack([to_finite("scores_a", sa), to_finite("scores_b", sb)]).astype(np.float64)
    m, n = int(y.sum()), int((~y).sum())
    if min(m, n) < 2:
        raise ValueError(f"DeLong's test needs at least 2 anomalous and 2 normal images; got {m} and {n}")
    pos, neg = s[:, y], s[:, ~y]
    t_pos, t_neg = rankdata(pos, axis=1), rankdata(neg, axis=1)
    t_all = rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    v10 = (t_all[:, :m] - t_pos) / n
    v01 = 1.0 - (t_all[:, m:] - t_neg) / m
    auc = v10.mean(axis=1)
    c = np.cov(v10) / m + np.cov(v01) / n
    var, diff = c[0, 0] + c[1, 1] - 2 * c[0, 1], float(auc[1] - auc[0])
    if var <= 0:
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
    else:
        z = diff / math.sqrt(var)
    return DeLong(float(auc[0]), float(auc[1]), z, math.erfc(abs(z) / math.sqrt(2)))
