"""Assemble teacher -> bottleneck -> decoder in the authors' construction order."""

from __future__ import annotations

import torch
from torch import nn

from rdbench.models.backbones import BACKBONES, Teacher, build_teacher
from rdbench.models.decoder import Decoder
from rdbench.models.ocbe import OCBE, Layer4Bottleneck

BOTTLENECKS = ("pre", "pre+oce", "pre+oce+mff")


class RDModel(nn.Module):
    def __init__(self, teacher: Teacher, bottleneck: nn.Module, decoder: Decoder, weights_info: dict,
                 backbone: str, bottleneck_kind: str):
        super().__init__()
        self.teacher = teacher
        self.bottleneck = bottleneck
        self.decoder = decoder
        self.weights_info = weights_info
        self.backbone = backbone
        self.bottleneck_kind = bottleneck_kind

    def trainable_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.decoder]
        if any(p.requires_grad for p in self.bottleneck.parameters()):
            mods.append(self.bottleneck)
        return mods

    def trainable_parameters(self) -> list[nn.Parameter]:
        # decoder first, then bottleneck: the authors' Adam param order (list(decoder)+list(bn))
        return [p for m in self.trainable_modules() for p in m.parameters() if p.requires_grad]

    def student(self, teacher_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return self.decoder(self.bottleneck(teacher_feats))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        with torch.no_grad():
            t = self.teacher(x)
        return t, self.student(t)


def build_rd_model(backbone: str, weights: str = "imagenet", bottleneck: str = "pre+oce+mff") -> RDModel:
    """Build the model. Seed with ``torch.manual_seed`` first for the authors' initial weights:
    their chain draws the full teacher (fc included), then the OCBE, then the decoder."""
    spec = BACKBONES.get(backbone)
    if bottleneck not in BOTTLENECKS:
        raise ValueError(f"unknown bottleneck {bottleneck!r}; valid bottlenecks: {', '.join(BOTTLENECKS)}")
    resnet, weights_info = build_teacher(backbone, weights)
    if bottleneck == "pre+oce+mff":
        neck: nn.Module = OCBE(spec.block, spec.ocbe_blocks, spec.base_width)
    else:
        neck = Layer4Bottleneck(resnet.layer4, trainable=(bottleneck == "pre+oce"))
    decoder = Decoder(spec.block, spec.decoder_layers, spec.base_width)
    return RDModel(Teacher(resnet), neck, decoder, weights_info, backbone, bottleneck)
