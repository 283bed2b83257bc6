"""Pure metric functions on numpy arrays (AUROC, both PRO variants). Imports nothing of rdbench."""

from rdbench.metrics.core import image_auroc, pixel_auroc, pro_auc

__all__ = ["image_auroc", "pixel_auroc", "pro_auc"]
