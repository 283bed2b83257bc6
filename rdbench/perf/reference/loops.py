"""The authors' loops (reference mode, see ``rdbench.perf.reference``): per-image prediction, their
``evaluation`` (test.py) and their ``train`` with its loss (main.py), on a ``ReferenceModel``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader, Dataset

from rdbench.config import RunConfig
from rdbench.perf.reference.metrics import cal_anomaly_map, compute_pro, mvtec_au_pro
from rdbench.perf.reference.model import ReferenceModel

__all__ = ["reference_predict", "ReferenceEvalResult", "reference_evaluate", "loss_fucntion", "reference_train"]


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
