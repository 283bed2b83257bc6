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
  ``rdbench.metrics.core.pro_auc``): constant map -> 0, no threshold with FPR < 0.3 -> 0, largest kept
  FPR 0 -> the largest kept PRO, a single kept point -> 0, a mask without normal pixels -> FPR 0.
* Metrics are not rounded to 3 decimals (they round when printing).
* ``layers`` may select a subset of layers (Table 7); the authors always use all three.
"""

from __future__ import annotations

import time
from bisect import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter
from scipy.ndimage import label as ndimage_label
from skimage import measure
from sklearn.metrics import auc, roc_auc_score
from torch import nn
from torch.utils.data import DataLoader, Dataset

from rdbench.config import RunConfig
from rdbench.models.backbones import BACKBONES, build_teacher
from rdbench.models.decoder import Decoder
from rdbench.models.ocbe import OCBE, Layer4Bottleneck
from rdbench.models.rd import BOTTLENECKS, RDModel

__all__ = ["ReferenceEncoder", "ReferenceModel", "build_reference_model", "reference_model_from",
           "cal_anomaly_map", "reference_predict", "compute_pro", "mvtec_compute_pro", "mvtec_trapezoid",
           "mvtec_au_pro", "reference_metrics", "ReferenceEvalResult", "reference_evaluate", "reference_train"]


# ------------------------------------------------------------------------------------------------ model
class ReferenceEncoder(nn.Module):
    """The authors' encoder: a full torchvision ResNet whose forward computes layer4 and discards it."""

    def __init__(self, resnet: nn.Module):
        super().__init__()
        self.resnet = resnet

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        feature_a = r.layer1(x)
        feature_b = r.layer2(feature_a)
        feature_c = r.layer3(feature_b)
        r.layer4(feature_c)  # computed and thrown away, as in their resnet.py
        return [feature_a, feature_b, feature_c]


class ReferenceModel(nn.Module):
    """encoder (full ResNet), bn (the bottleneck: OCBE or the Table 5 layer4 variants) and decoder."""

    def __init__(self, encoder: ReferenceEncoder, bn: nn.Module, decoder: nn.Module, backbone: str):
        super().__init__()
        self.encoder, self.bn, self.decoder, self.backbone = encoder, bn, decoder, backbone
        self.encoder.eval()  # the authors call encoder.eval() once, after building it

    def train(self, mode: bool = True) -> ReferenceModel:
        # bn.train() / decoder.train() per epoch; the encoder stays in eval mode
        self.training = mode
        self.bn.train(mode)
        self.decoder.train(mode)
        return self


def build_reference_model(backbone: str, weights: str = "imagenet", bottleneck: str = "pre+oce+mff"
                          ) -> ReferenceModel:
    """Build the model as the authors do, drawing the same random numbers as ``build_rd_model``: with the
    same ``torch.manual_seed`` both start from identical weights."""
    spec = BACKBONES.get(backbone)
    make_neck = BOTTLENECKS.get(bottleneck)  # unknown names fail here, listing the valid ones
    resnet, _info = build_teacher(backbone, weights)
    neck = make_neck(spec, resnet)
    decoder = Decoder(spec.block, spec.decoder_layers, spec.base_width)
    return ReferenceModel(ReferenceEncoder(resnet), neck, decoder, backbone)


def reference_model_from(model: RDModel) -> ReferenceModel:
    """The reference form of an existing (e.g. trained) rdbench model: a full torchvision ResNet carrying
    the teacher's weights (layer4 and fc freshly initialised: their output is never used; the global RNG
    is left untouched), and the model's own bottleneck and decoder modules (shared, not copied)."""
    spec = BACKBONES.get(model.backbone)
    with torch.random.fork_rng(devices=[]):
        resnet = spec.torchvision_fn()(weights=None)
    missing, unexpected = resnet.load_state_dict(model.teacher.state_dict(), strict=False)
    if unexpected or any(not k.startswith(("layer4.", "fc.")) for k in missing):
        raise RuntimeError(f"teacher weights do not fit torchvision's {model.backbone}: missing {missing[:3]}, "
                           f"unexpected {unexpected[:3]}")
    device = next(model.teacher.parameters()).device
    return ReferenceModel(ReferenceEncoder(resnet.to(device)), model.bottleneck, model.decoder, model.backbone)


# ------------------------------------------------------------------------------------------- anomaly maps
def cal_anomaly_map(fs_list: list[torch.Tensor], ft_list: list[torch.Tensor], out_size: int = 224,
                    amap_mode: str = "mul") -> tuple[np.ndarray, list[np.ndarray]]:
    """The authors' function (batch size 1): per layer 1 - cos, upsampled, summed ('a') or multiplied
    ('mul') into a float64 numpy map."""
    anomaly_map = np.ones([out_size, out_size]) if amap_mode == "mul" else np.zeros([out_size, out_size])
    a_map_list = []
    for i in range(len(ft_list)):
        fs, ft = fs_list[i], ft_list[i]
        a_map = 1 - F.cosine_similarity(fs, ft)
        a_map = torch.unsqueeze(a_map, dim=1)
        a_map = F.interpolate(a_map, size=out_size, mode="bilinear", align_corners=True)
        a_map = a_map[0, 0, :, :].to("cpu").detach().numpy()
        a_map_list.append(a_map)
        if amap_mode == "mul":
            anomaly_map *= a_map
        else:
            anomaly_map += a_map
    return anomaly_map, a_map_list


def _select(feats: list[torch.Tensor], layers: tuple[int, ...]) -> list[torch.Tensor]:
    return [feats[i - 1] for i in layers]


def reference_predict(model: ReferenceModel, img: torch.Tensor, layers: tuple[int, ...] = (1, 2, 3),
                      sigma: float = 4.0) -> np.ndarray:
    """One image (1 x 3 x S x S, on the model's device) -> its smoothed float64 S x S map, as the authors'
    evaluation loop computes it."""
    if img.shape[0] != 1:
        raise ValueError(f"the authors' evaluation runs one image at a time; got a batch of {img.shape[0]}")
    with torch.no_grad():
        inputs = model.encoder(img)
        outputs = model.decoder(model.bn(inputs))
        anomaly_map, _ = cal_anomaly_map(_select(inputs, layers), _select(outputs, layers), img.shape[-1],
                                         amap_mode="a")
        return gaussian_filter(anomaly_map, sigma=sigma)


# ------------------------------------------------------------------------------------------------ metrics
def compute_pro(masks: np.ndarray, amaps: np.ndarray, num_th: int = 200, fpr_limit: float = 0.3) -> float:
    """The authors' ``compute_pro`` (called with one image: masks and amaps 1 x H x W), with the pandas-2
    update and rdbench's rules where theirs fails (module docstring)."""
    assert isinstance(amaps, np.ndarray), "type(amaps) must be ndarray"
    assert isinstance(masks, np.ndarray), "type(masks) must be ndarray"
    assert amaps.ndim == 3, "amaps.ndim must be 3 (num_test_data, h, w)"
    assert masks.ndim == 3, "masks.ndim must be 3 (num_test_data, h, w)"
    assert amaps.shape == masks.shape, "amaps.shape and masks.shape must be same"
    assert set(masks.flatten()) <= {0, 1}, "set(masks.flatten()) must be {0, 1}"  # theirs: == {0, 1}
    assert isinstance(num_th, int), "type(num_th) must be int"

    df = pd.DataFrame([], columns=["pro", "fpr", "threshold"])
    binary_amaps = np.zeros_like(amaps, dtype=bool)

    min_th = amaps.min()
    max_th = amaps.max()
    if max_th == min_th:
        return 0.0  # rule: constant map (their np.arange raises on a step of 0)
    delta = (max_th - min_th) / num_th

    for th in np.arange(min_th, max_th, delta):
        binary_amaps[amaps <= th] = 0
        binary_amaps[amaps > th] = 1

        pros = []
        for binary_amap, mask in zip(binary_amaps, masks):
            for region in measure.regionprops(measure.label(mask)):
                axes0_ids = region.coords[:, 0]
                axes1_ids = region.coords[:, 1]
                tp_pixels = binary_amap[axes0_ids, axes1_ids].sum()
                pros.append(tp_pixels / region.area)

        inverse_masks = 1 - masks
        fp_pixels = np.logical_and(inverse_masks, binary_amaps).sum()
        fpr = fp_pixels / inverse_masks.sum() if inverse_masks.sum() else 0.0  # rule: no normal pixel

        row = pd.DataFrame([{"pro": mean(pros), "fpr": fpr, "threshold": th}])
        df = pd.concat([df, row], ignore_index=True)  # their df.append(..., ignore_index=True)

    df = df[df["fpr"] < fpr_limit]
    if len(df) == 0:
        return 0.0  # rule: no kept point
    if df["fpr"].max() == 0:
        return float(df["pro"].max())  # rule: all kept points at FPR 0
    if len(df) == 1:
        return 0.0  # rule: a single point has no area
    df["fpr"] = df["fpr"] / df["fpr"].max()
    return float(auc(df["fpr"], df["pro"]))


def mvtec_compute_pro(anomaly_maps: list[np.ndarray] | np.ndarray, ground_truth_maps: list[np.ndarray] | np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """MVTec AD's evaluation script (``generic_util.compute_pro``): the PRO curve over all images."""
    structure = np.ones((3, 3), dtype=int)
    num_ok_pixels = 0
    num_gt_regions = 0
    shape = (len(anomaly_maps), anomaly_maps[0].shape[0], anomaly_maps[0].shape[1])
    fp_changes = np.zeros(shape, dtype=np.uint32)
    pro_changes = np.zeros(shape, dtype=np.float64)
    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = ndimage_label(gt_map, structure)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels_in_map = np.sum(ok_mask)
        num_ok_pixels += num_ok_pixels_in_map
        fp_change = np.zeros_like(gt_map, dtype=fp_changes.dtype)
        fp_change[ok_mask] = 1
        pro_change = np.zeros_like(gt_map, dtype=np.float64)
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            region_size = np.sum(region_mask)
            pro_change[region_mask] = 1.0 / region_size
        fp_changes[gt_ind, :, :] = fp_change
        pro_changes[gt_ind, :, :] = pro_change
    anomaly_scores_flat = np.array(anomaly_maps).ravel()
    fp_changes_flat = fp_changes.ravel()
    pro_changes_flat = pro_changes.ravel()
    sort_idxs = np.argsort(anomaly_scores_flat).astype(np.uint32)[::-1]
    np.take(anomaly_scores_flat, sort_idxs, out=anomaly_scores_flat)
    anomaly_scores_sorted = anomaly_scores_flat
    np.take(fp_changes_flat, sort_idxs, out=fp_changes_flat)
    fp_changes_sorted = fp_changes_flat
    np.take(pro_changes_flat, sort_idxs, out=pro_changes_flat)
    pro_changes_sorted = pro_changes_flat
    del sort_idxs
    np.cumsum(fp_changes_sorted, out=fp_changes_sorted)
    fp_changes_sorted = fp_changes_sorted.astype(np.float32, copy=False)
    np.divide(fp_changes_sorted, num_ok_pixels, out=fp_changes_sorted)
    fprs = fp_changes_sorted
    np.cumsum(pro_changes_sorted, out=pro_changes_sorted)
    np.divide(pro_changes_sorted, num_gt_regions, out=pro_changes_sorted)
    pros = pro_changes_sorted
    keep_mask = np.append(np.diff(anomaly_scores_sorted) != 0, np.True_)
    del anomaly_scores_sorted
    fprs = fprs[keep_mask]
    pros = pros[keep_mask]
    del keep_mask
    np.clip(fprs, a_min=None, a_max=1.0, out=fprs)
    np.clip(pros, a_min=None, a_max=1.0, out=pros)
    zero = np.array([0.0])
    one = np.array([1.0])
    return np.concatenate((zero, fprs, one)), np.concatenate((zero, pros, one))


def mvtec_trapezoid(x: np.ndarray, y: np.ndarray, x_max: float | None = None) -> float:
    """MVTec AD's evaluation script (``generic_util.trapezoid``)."""
    x, y = np.array(x), np.array(y)
    finite_mask = np.logical_and(np.isfinite(x), np.isfinite(y))
    x, y = x[finite_mask], y[finite_mask]
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + ((y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1]))
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        mask = x <= x_max
        x, y = x[mask], y[mask]
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction)


def mvtec_au_pro(masks: np.ndarray, maps: np.ndarray, integration_limit: float = 0.3) -> float:
    """MVTec AD's ``evaluate_experiment``: area under the PRO curve up to the limit, divided by it."""
    fprs, pros = mvtec_compute_pro(maps, masks)
    return mvtec_trapezoid(fprs, pros, x_max=integration_limit) / integration_limit


def reference_metrics(labels: np.ndarray, masks: np.ndarray, maps: np.ndarray) -> dict[str, float]:
    """The four metrics from finished maps the reference way (sklearn AUROCs on the arrays, the authors'
    ``compute_pro`` per anomalous image, MVTec's script for the MVTec PRO). Used by the metrics benchmark;
    ``reference_evaluate`` does the same inside the authors' loop."""
    masks = np.asarray(masks).astype(int)
    maps = np.asarray(maps, dtype=np.float64)
    aupro = [compute_pro(m[np.newaxis], a[np.newaxis]) for m, a, y in zip(masks, maps, labels) if y != 0]
    return {"image_auroc": float(roc_auc_score(labels, maps.reshape(len(maps), -1).max(axis=1))),
            "pixel_auroc": float(roc_auc_score(masks.ravel(), maps.ravel())),
            "pro_mvtec": mvtec_au_pro(masks, maps),
            "pro_rd4ad": float(np.mean(aupro))}


# --------------------------------------------------------------------------------------------- evaluation
@dataclass
class ReferenceEvalResult:
    metrics: dict[str, float]
    scores: list[float]  # image scores (max of each map), in dataset order
    seconds: float
    maps: np.ndarray | None = field(default=None, repr=False)  # N x H x W float64
    masks: np.ndarray | None = field(default=None, repr=False)


def reference_evaluate(model: ReferenceModel, dataset: Dataset, layers: tuple[int, ...] = (1, 2, 3),
                       sigma: float = 4.0, device: torch.device | str = "cpu", keep_maps: bool = False,
                       with_pro_mvtec: bool = True) -> ReferenceEvalResult:
    """The authors' ``evaluation`` on a dataset of ``TestItem``s (image, mask, label, ...); the MVTec PRO
    (MVTec's script, over all maps) is added so the result has the same four metrics as
    ``rdbench.engine.evaluate.evaluate``."""
    device = torch.device(device)
    model.to(device)
    model.bn.eval()
    model.decoder.eval()
    gt_list_px: list = []
    pr_list_px: list = []
    gt_list_sp: list = []
    pr_list_sp: list = []
    aupro_list: list = []
    maps: list[np.ndarray] = []
    masks: list[np.ndarray] = []
    loader = DataLoader(dataset, batch_size=1, shuffle=False)
    t0 = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            img, gt, label = batch[0], batch[1].clone(), batch[2]
            img = img.to(device)
            anomaly_map = reference_predict(model, img, layers, sigma)
            gt[gt > 0.5] = 1
            gt[gt <= 0.5] = 0
            if label.item() != 0:
                aupro_list.append(compute_pro(gt.squeeze(0).cpu().numpy().astype(int),
                                              anomaly_map[np.newaxis, :, :]))
            gt_list_px.extend(gt.cpu().numpy().astype(int).ravel())
            pr_list_px.extend(anomaly_map.ravel())
            gt_list_sp.append(np.max(gt.cpu().numpy().astype(int)))
            pr_list_sp.append(np.max(anomaly_map))
            maps.append(anomaly_map)
            masks.append(gt[0, 0].cpu().numpy().astype(int))
        auroc_px = roc_auc_score(gt_list_px, pr_list_px)
        auroc_sp = roc_auc_score(gt_list_sp, pr_list_sp)
    metrics = {"image_auroc": float(auroc_sp), "pixel_auroc": float(auroc_px),
               "pro_rd4ad": float(np.mean(aupro_list))}
    if with_pro_mvtec:
        metrics["pro_mvtec"] = mvtec_au_pro(np.stack(masks), np.stack(maps))
    seconds = time.perf_counter() - t0
    return ReferenceEvalResult(metrics, [float(s) for s in pr_list_sp], seconds,
                               np.stack(maps) if keep_maps else None, np.stack(masks) if keep_maps else None)


# ----------------------------------------------------------------------------------------------- training
def loss_fucntion(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    """The authors' loss (their spelling): per layer mean over the batch of 1 - cos of flattened maps."""
    cos_loss = torch.nn.CosineSimilarity()
    loss = 0
    for item in range(len(a)):
        loss += torch.mean(1 - cos_loss(a[item].view(a[item].shape[0], -1), b[item].view(b[item].shape[0], -1)))
    return loss


def reference_train(model: ReferenceModel, dataset: Dataset, config: RunConfig, device: torch.device | str = "cpu",
                    on_epoch: Callable[[int, float], None] | None = None) -> list[float]:
    """The authors' training loop on ``model`` (in place) -> per-epoch mean of batch losses. Batches follow
    rdbench's seeded order (``config.seed``); images are read from ``dataset`` per batch. Like the authors'
    DataLoader it keeps a last batch of one image (``rdbench.engine.train`` drops it at 32 px, where train-mode
    batch norm on a 1x1 bottleneck fails), so compare the two at 64 px and above."""
    if config.loss != "flat":
        raise ValueError("the authors' code has only the flattened cosine loss (loss='flat')")
    device = torch.device(device)
    model.to(device)
    encoder, bn, decoder = model.encoder, model.bn, model.decoder
    params = [p for p in list(decoder.parameters()) + list(bn.parameters()) if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas)
    generator = torch.Generator().manual_seed(config.seed)
    n = len(dataset)
    curve = []
    for epoch in range(config.epochs):
        bn.train()
        decoder.train()
        loss_list = []
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            img = torch.stack([dataset[int(i)] for i in order[start:start + config.batch_size]])
            img = img.to(device)
            inputs = encoder(img)
            outputs = decoder(bn(inputs))
            loss = loss_fucntion(_select(inputs, config.layers), _select(outputs, config.layers))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_list.append(loss.item())
        curve.append(float(np.mean(loss_list)))
        if on_epoch is not None:
            on_epoch(epoch + 1, curve[-1])
    return curve
