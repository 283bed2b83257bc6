"""The authors' metrics (reference mode, see ``rdbench.perf.reference``): their ``cal_anomaly_map`` and
``compute_pro`` (hq-deng/RD4AD test.py), MVTec AD's own PRO script (``generic_util.compute_pro`` and
``trapezoid``), and the four metrics of finished maps computed that way."""

from __future__ import annotations

from bisect import bisect
from statistics import mean

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.ndimage import label as ndimage_label
from skimage import measure
from sklearn.metrics import auc, roc_auc_score

__all__ = ["cal_anomaly_map", "compute_pro", "mvtec_compute_pro", "mvtec_trapezoid", "mvtec_au_pro",
           "reference_metrics"]


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


def compute_pro(masks: np.ndarray, amaps: np.ndarray, num_th: int = 200, fpr_limit: float = 0.3) -> float:
    """The authors' ``compute_pro`` (called with one image: masks and amaps 1 x H x W), with the pandas-2
    update and rdbench's rules where theirs fails (``rdbench.perf.reference``'s docstring)."""
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
