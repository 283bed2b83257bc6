"""Reference mode: the authors' procedure, done the way their code does it (hq-deng/RD4AD, commit 6554076,
``test.py`` and ``main.py``), restated on rdbench's models and datasets. It exists to measure what
rdbench's fast path saves (``rdbench.perf.profile``, ``tests/benchmarks``) and to check that the fast path
computes the same numbers (``tests/test_reference.py``). It is slow on purpose: do not use it for runs.

What the authors do, and what is restated here:

* Encoder: a full torchvision ResNet; ``forward`` runs layer1..layer4 and returns [layer1, layer2, layer3]
  (layer4 is computed and thrown away). Its parameters require gradients (torchvision's default; the
  authors never freeze them), so in training autograd records the teacher and back-propagates into it.
* Evaluation (``evaluation`` in test.py): a DataLoader with batch size 1; per image ``cal_anomaly_map``
  (per layer ``1 - cos`` along channels, bilinear upsampling with align_corners=True, moved to numpy and
  summed into a float64 array), ``scipy.ndimage.gaussian_filter(sigma=4)`` on that float64 map, pixel
  lists grown with ``list.extend``, image score = max of the map, image label = max of the mask,
  ``compute_pro`` on every anomalous image, then sklearn ``roc_auc_score`` for pixels and images.
  ``compute_pro`` is restated below: 200 thresholds, skimage ``label`` + ``regionprops`` of the mask at
  every threshold, a pandas DataFrame grown one row per threshold, sklearn ``auc``.
* The MVTec variant of PRO is not in the authors' code; its reference is MVTec AD's own evaluation script
  (``generic_util.compute_pro`` + ``trapezoid``: argsort of all pixels, float32 FPRs), restated below.
* Training (``train`` in main.py): Adam on ``list(decoder.parameters()) + list(bn.parameters())``, the
  teacher recomputed (with autograd) at every step, images read and transformed per batch
  (their DataLoader, no workers), the flattened cosine loss, loss printed as the mean of batch losses.

Deliberate differences, each needed to compare with rdbench or to run on today's libraries:

* Batch order: rdbench's seeded generator (one ``randperm`` per epoch, as ``rdbench.engine.train``), so both
  loops see the same batches; the authors' DataLoader draws from the global RNG.
* ``df.append`` (removed in pandas 2) is ``pd.concat`` of a one-row frame; ``np.bool`` is ``bool``.
* Where their ``compute_pro`` crashes or returns NaN, rdbench's documented rules apply (see
  ``rdbench.metrics.pro_auc``): constant map -> 0, no threshold with FPR < 0.3 -> 0, largest kept
  FPR 0 -> the largest kept PRO, a single kept point -> 0, a mask without normal pixels -> FPR 0.
* Metrics are not rounded to 3 decimals (they round when printing).
* ``layers`` may select a subset of layers (Table 7); the authors always use all three.

Where it lives: ``model`` (the authors' model), ``metrics`` (their metrics and MVTec's PRO script),
``loops`` (prediction, evaluation, training); every public name is importable from this package.
"""

from rdbench.perf.reference.loops import (
    ReferenceEvalResult,
    loss_fucntion,
    reference_evaluate,
    reference_predict,
    reference_train,
)
from rdbench.perf.reference.metrics import (
    cal_anomaly_map,
    compute_pro,
    mvtec_au_pro,
    mvtec_compute_pro,
    mvtec_trapezoid,
    reference_metrics,
)
from rdbench.perf.reference.model import (
    ReferenceEncoder,
    ReferenceModel,
    build_reference_model,
    reference_model_from,
)

__all__ = ["ReferenceEncoder", "ReferenceModel", "build_reference_model", "reference_model_from",
           "cal_anomaly_map", "reference_predict", "compute_pro", "mvtec_compute_pro", "mvtec_trapezoid",
           "mvtec_au_pro", "reference_metrics", "ReferenceEvalResult", "reference_evaluate", "reference_train",
           "loss_fucntion"]
