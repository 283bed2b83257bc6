"""Distillation losses between teacher and student feature lists, and their registry (``RunConfig.loss``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from rdbench.registry import Registry

Loss = Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]
LOSSES: Registry[Loss] = Registry("loss")


@LOSSES.register("flat")
def flat_cosine_loss(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> torch.Tensor:
    """The authors' loss: per layer, 1 - cos between each sample's whole flattened C*H*W maps, batch
    mean, summed over layers. The paper's Eq. 2 describes a per-pixel form instead (see pixel_…);
    the flattened one is what produced the published numbers."""
    loss = teacher[0].new_zeros(())
    for t, s in zip(teacher, student):
        loss = loss + torch.mean(1 - F.cosine_similarity(t.reshape(t.shape[0], -1),
                                                         s.reshape(s.shape[0], -1), dim=1, eps=1e-8))
    return loss


@LOSSES.register("pixel")
def pixel_cosine_loss(teacher: list[torch.Tensor], student: list[torch.Tensor]) -> torch.Tensor:
    """The paper's Eq. 2-3: 1 - channel cosine at every position, averaged over positions, summed over
    layers. Users report it trains worse than the flattened form (RD4AD repo issue #22)."""
    loss = teacher[0].new_zeros(())
    for t, s in zip(teacher, student):
        loss = loss + torch.mean(1 - F.cosine_similarity(t, s, dim=1, eps=1e-8))
    return loss


def distillation_loss(kind: str, teacher: list[torch.Tensor], student: list[torch.Tensor]) -> torch.Tensor:
    return LOSSES.get(kind)(teacher, student)
