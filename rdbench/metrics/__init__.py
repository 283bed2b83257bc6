"""Anomaly-detection metrics: image AUROC, pixel AUROC and the two PRO (per-region overlap) variants.

Pure functions on numpy arrays. Anomaly maps are ``N x H x W`` floats, ground-truth masks ``N x H x W``
in {0, 1} (bool, int or float); a single ``H x W`` pair is treated as N = 1. Floating scores keep
their dtype (comparisons within float32 are exact, and sorting float32 is twice as fast as float64);
other scores become float64. Nothing is rounded here (the authors round to 3 decimals when printing:
a reporting choice). Each definition, and where it follows the authors' code rather than the paper, is in
docs/parity.md ("The authors' own evaluation as the oracle", "Deliberate differences").

Modules: ``auroc`` (image and pixel AUROC), ``pro`` (both PRO variants, at map or mask resolution), ``ap``
(average precision and F1-max), ``bootstrap`` (intervals, paired differences, DeLong), ``checks`` (input
validation).
Imports nothing of rdbench.
"""

from rdbench.metrics.ap import image_ap, image_ap_f1_max, image_f1_max, pixel_ap, pixel_ap_f1_max, pixel_f1_max
from rdbench.metrics.auroc import image_auroc, pixel_auroc
from rdbench.metrics.bootstrap import (
    INTERVAL_METRICS,
    DeLong,
    Interval,
    ScoreSummary,
    bootstrap_intervals,
    delong_test,
    metric_values,
    paired_bootstrap_diff,
    resample_weights,
    summarize,
)
from rdbench.metrics.pro import (
    PRO_RESOLUTIONS,
    PRO_VARIANTS,
    RD4AD_NUM_THRESHOLDS,
    pro_auc,
    pro_per_image,
    resize_bilinear,
)

__all__ = ["PRO_VARIANTS", "RD4AD_NUM_THRESHOLDS", "image_auroc", "pixel_auroc", "pro_auc"]
__all__ += ["image_ap", "image_ap_f1_max", "image_f1_max", "pixel_ap", "pixel_ap_f1_max", "pixel_f1_max",
            "PRO_RESOLUTIONS", "pro_per_image", "resize_bilinear", "INTERVAL_METRICS", "DeLong", "Interval",
            "ScoreSummary", "bootstrap_intervals", "delong_test", "metric_values", "paired_bootstrap_diff",
            "resample_weights", "summarize"]
