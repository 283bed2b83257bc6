"""Bootstrap intervals over seeds and test images from the records' scores sidecars: one implementation for
``rdbench compare`` (B - A), ``baseline check --stat`` (fresh - baseline) and the report's paper tables (a cell's
mean against the paper's value).

A draw of the hierarchical bootstrap, for each side (A and B; a table cell is one side):
1. the side's seeds, drawn with replacement (as many as it has), independently for each side: A's and B's runs
   are different trainings whatever their seed numbers, so nothing pairs them;
2. one stratified multiplicity vector of the test images (``rdbench.metrics.resample_weights``), the same for
   every run of both sides: all of them scored the same images, so the test set is one sample that every run
   shares (crossed with the seeds, not nested in them: a fresh image draw per seed would count the test set's own
   sampling once per seed, and B - A would no longer compare the two sides on the same images);
3. the metric of each drawn run on the drawn images, averaged over the side's drawn seeds.
The interval is the percentile interval of the draws' B - A (or of the side's mean). Seeds are drawn only when
every side has >= 2: with one seed a side's training spread is unknown, and drawing the other side's seeds alone
would present an interval that still leaves it out; such an interval covers the test images only
(``IMAGES``). A bootstrap of n seeds also sees (n - 1) / n of their variance, another reason the gates ask for
3 seeds a side before they judge (``--min-seeds``)."""

from __future__ import annotations

from weakref import WeakKeyDictionary

import numpy as np

from rdbench.metrics import INTERVAL_METRICS, ScoreSummary, metric_values, resample_weights

N_RESAMPLES, LEVEL, SEED = 1000, 0.95, 0  # seed 0: the draw of the records' own intervals (engine.evaluate)
IMAGES, SEEDS_AND_IMAGES = "images", "images, seeds"  # what an interval resampled
# record metric -> the ScoreSummary metric it is; novelty records name the sum score's metrics auroc/ap/f1_max
# (engine.evaluate.NOVELTY_INTERVALS inverted, restated here: the report reads the bench, never the engine)
SUMMARY_NAMES = {**{m: m for m in INTERVAL_METRICS}, "auroc": "image_auroc", "ap": "image_ap",
                 "f1_max": "image_f1_max"}

# per summary: (metric, resamples, seed) -> the metric on each image draw. Every run of a category shares the
# draw (it depends on the labels only) and a report asks for one run in several tables; weak keys, so a summary
# read for one cell is freed with its cell.
_DRAWN: WeakKeyDictionary = WeakKeyDictionary()


def drawn_values(s: ScoreSummary, metric: str, n_resamples: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """(n_resamples,) values of a ScoreSummary metric on the stratified image draws of ``seed``."""
    per = _DRAWN.setdefault(s, {})
    key = (metric, n_resamples, seed)
    if key not in per:
        per[key] = metric_values(s, resample_weights(s.labels, n_resamples, seed), [metric])[metric]
    return per[key]


def _same_images(summaries: list[ScoreSummary]) -> None:
    first = summaries[0].labels
    if any(s.labels.shape != first.shape or not np.array_equal(s.labels, first) for s in summaries[1:]):
        raise ValueError("every run must score the same test images in the same order; their labels differ")


def _side_means(values: np.ndarray, seeds: bool, rng: np.random.Generator) -> np.ndarray:
    """(S seeds, R draws) -> (R,): per draw the mean over the side's seeds, redrawn with replacement if ``seeds``."""
    if not seeds:
        return values.mean(0)
    picked = rng.integers(0, len(values), size=values.shape)
    return values[picked, np.arange(values.shape[1])].mean(0)


def diff_interval(a: list[ScoreSummary], b: list[ScoreSummary], metric: str, n_resamples: int = N_RESAMPLES,
                  seed: int = SEED, level: float = LEVEL) -> tuple[float, float, str]:
    """(low, high, what was resampled: ``IMAGES`` or ``SEEDS_AND_IMAGES``) of mean(B) - mean(A) for a ScoreSummary
    metric, by the module's hierarchical bootstrap. One seed each: exactly ``paired_bootstrap_diff``'s interval."""
    _same_images(a + b)
    seeds = len(a) >= 2 and len(b) >= 2
    va, vb = (np.stack([drawn_values(s, metric, n_resamples, seed) for s in side]) for side in (a, b))
    rng = np.random.default_rng(seed + 1)
    diff = _side_means(vb, seeds, rng) - _side_means(va, seeds, rng)
    low, high = np.nanquantile(diff, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high), SEEDS_AND_IMAGES if seeds else IMAGES


def mean_interval(runs: list[ScoreSummary], metric: str, n_resamples: int = N_RESAMPLES, seed: int = SEED,
                  level: float = LEVEL) -> tuple[float, float, str]:
    """(low, high, what was resampled) of the mean over seeds of a ScoreSummary metric: one side of
    ``diff_interval`` (seeds and images with >= 2 runs, images only with one)."""
    _same_images(runs)
    values = np.stack([drawn_values(s, metric, n_resamples, seed) for s in runs])
    seeds = len(runs) >= 2
    low, high = np.nanquantile(_side_means(values, seeds, np.random.default_rng(seed + 1)),
                               [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high), SEEDS_AND_IMAGES if seeds else IMAGES


def seed_interval(runs: list[ScoreSummary | None], metric: str) -> tuple[float, float] | None:
    """The 95% interval over seeds and test images of the mean of a record metric (novelty names too) over these
    seeds' runs, or None when a run has no sidecar for it or they scored other test images."""
    name = SUMMARY_NAMES.get(metric)
    if name is None or not runs or any(s is None or name not in s.metrics for s in runs):
        return None
    try:
        low, high, _ = mean_interval(runs, name)
    except ValueError:  # no draw of images they all share
        return None
    return low, high
