"""Average precision and F1-max of images and pixels, from one sort and tie-grouped cumulative counts.

Definitions (those of sklearn's ``precision_recall_curve`` / ``average_precision_score`` and of anomalib's
``F1Max``): the thresholds are the distinct scores t; a score >= t is predicted anomalous, so tied scores
enter together (one point per distinct score). With TP(t), FP(t) the anomalous and normal counts at or above
t and P the number of anomalous items, precision(t) = TP / (TP + FP) and recall(t) = TP / P.

* AP = sum over the distinct scores, descending, of (recall(t) - recall(previous t)) * precision(t): the
  step-wise sum without interpolation, exactly sklearn's. Only thresholds where recall moves (distinct
  anomalous scores) have a term.
* F1-max = max over the distinct scores of 2 PR / (P + R) = 2 TP / (TP + FP + P), with 0/0 taken as 0
  (precision and recall both 0: TP = 0). For a fixed TP, F1 falls as FP grows, so the maximum is reached at
  a distinct anomalous score, the highest threshold giving that TP.

Both need anomalous and normal items (ValueError otherwise, as the AUROCs: with no normal item AP would be 1
by definition, which says nothing of a detector). Scores keep a floating dtype (float32 compares exactly).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from rdbench.metrics.checks import both_classes, maps_and_masks, to_binary, to_finite

__all__ = ["ap_f1_from_counts", "image_ap", "image_ap_f1_max", "image_f1_max", "pixel_ap", "pixel_ap_f1_max",
           "pixel_f1_max", "tie_counts"]


def tie_counts(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Counts per bin for the exact AP / F1-max: bin j >= 1 starts at the j-th smallest distinct anomalous
    score u and holds the anomalous items equal to u and the normal ones in [u, next u); bin 0 holds the
    normal items below every anomalous score. Ascending bins, int64; give them to ``ap_f1_from_counts``
    with ``tied=True`` (its thresholds are then exactly the distinct anomalous scores).

    Only two sorts (the normal items dominate; np.sort is several times faster than a stable argsort of
    everything, and the counts at each threshold come from searchsorted, not from a merged order).
    """
    pos, neg = np.sort(pos), np.sort(neg)
    starts = np.flatnonzero(np.concatenate(([True], pos[1:] != pos[:-1])))  # first of each tie run
    pos_counts = np.diff(np.append(starts, pos.size))
    below = np.searchsorted(neg, pos[starts], side="left")  # normal items under each distinct score
    neg_counts = np.diff(np.concatenate(([0], below, [neg.size])))
    return np.concatenate(([0], pos_counts)), neg_counts


def ap_f1_from_counts(pos: ArrayLike, neg: ArrayLike, tied: ArrayLike | bool = True
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(AP, F1-max) from counts per bin, bins ascending by score along the last axis (leading axes: e.g. one
    row per bootstrap resample; counts may be float weights).

    ``tied`` (per bin, or one bool): a tied bin is one score, so its items enter at once, as sklearn's
    ties (precision at the bin's bottom). An untied bin (a histogram bin holding different scores, whose
    order inside it is lost) enters at its midpoint: its anomalous items get the precision with half of
    the bin's counts added, the expected precision if the bin's classes are evenly interleaved, which
    keeps the error of binning second order (see bootstrap.py). F1-max is taken at the bins' bottoms
    (thresholds that exist in the data), so a binned F1-max never exceeds the exact one.
    """
    pos, neg = np.asarray(pos, dtype=np.float64), np.asarray(neg, dtype=np.float64)
    tp = np.cumsum(pos[..., ::-1], axis=-1)[..., ::-1]  # at or above each bin's bottom
    fp = np.cumsum(neg[..., ::-1], axis=-1)[..., ::-1]
    n_pos = tp[..., :1]
    half = np.where(np.asarray(tied, dtype=bool), 0.0, 0.5)  # the share of the bin NOT yet counted
    t, f = tp - half * pos, fp - half * neg
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(pos > 0, t / (t + f), 0.0)  # t > 0 wherever pos > 0
        ap = np.sum(pos * precision, axis=-1) / n_pos[..., 0]
        f1 = np.max(2 * tp / (tp + fp + n_pos), axis=-1)  # tp = 0 gives 0, never 0/0 (n_pos > 0)
    return ap, f1


def _image_inputs(labels: ArrayLike, scores: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, s = np.asarray(labels), np.asarray(scores)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(
            f"labels and scores must be 1-D of equal length; got labels {y.shape} and scores {s.shape}")
    y, s = to_binary("labels", y), to_finite("scores", s)
    both_classes(y, "image")
    return s[y], s[~y]


def _pixel_inputs(masks: ArrayLike, maps: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m, a = maps_and_masks(masks, maps)
    both_classes(m, "pixel")
    return a[m], a[~m]


def _ap_f1(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    ap, f1 = ap_f1_from_counts(*tie_counts(pos, neg), tied=True)
    return float(ap), float(f1)


def image_ap_f1_max(labels: ArrayLike, scores: ArrayLike) -> tuple[float, float]:
    """(AP, F1-max) of per-image scores against labels (1 = anomalous), from one sort."""
    return _ap_f1(*_image_inputs(labels, scores))


def image_ap(labels: ArrayLike, scores: ArrayLike) -> float:
    """Average precision of per-image scores; equals sklearn's average_precision_score."""
    return image_ap_f1_max(labels, scores)[0]


def image_f1_max(labels: ArrayLike, scores: ArrayLike) -> float:
    """Largest F1 over the distinct image scores as thresholds (anomalib's F1Max)."""
    return image_ap_f1_max(labels, scores)[1]


def pixel_ap_f1_max(masks: ArrayLike, maps: ArrayLike) -> tuple[float, float]:
    """(AP, F1-max) over all pixels of all images (mask 1 = anomalous), from one sort: use it when both
    are wanted (the sort of the normal pixels is most of the cost)."""
    return _ap_f1(*_pixel_inputs(masks, maps))


def pixel_ap(masks: ArrayLike, maps: ArrayLike) -> float:
    """Average precision over all pixels; equals sklearn's average_precision_score on the flattened arrays."""
    return pixel_ap_f1_max(masks, maps)[0]


def pixel_f1_max(masks: ArrayLike, maps: ArrayLike) -> float:
    """Largest pixel F1 over the distinct pixel scores as thresholds (anomalib's pixel F1Max)."""
    return pixel_ap_f1_max(masks, maps)[1]
