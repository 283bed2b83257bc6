"""Assemble teacher -> bottleneck -> decoder in the authors' construction order; the bottleneck registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torchvision.models import ResNet

from rdbench.models.backbones import BACKBONES, BackboneSpec, Teacher, build_teacher
from rdbench.models.decoder import Decoder
from rdbench.models.ocbe import OCBE, Layer4Bottleneck
from rdbench.registry import Registry

# Table 5 variants: name -> builder(backbone spec, the teacher's full ResNet) -> bottleneck module. A builder
# runs after the teacher and before the decoder, so the random numbers it draws keep the authors' order.
BOTTLENECKS: Registry[Callable[[BackboneSpec, ResNet], nn.Module]] = Registry("bottleneck")


@BOTTLENECKS.register("pre")
def pre_bottleneck(spec: BackboneSpec, resnet: ResNet) -> nn.Module:
    """Table 5 'Pre': the teacher's own frozen layer4 as the bottleneck (no OCE, no MFF)."""
    return Layer4Bottleneck(resnet.layer4, trainable=False)


@BOTTLENECKS.register("pre+oce")
def pre_oce_bottleneck(spec: BackboneSpec, resnet: ResNet) -> nn.Module:
    """Table 5 'Pre+OCE': a trainable copy of layer4 (one-class embedding, no multi-scale fusion)."""
    return Layer4Bottleneck(resnet.layer4, trainable=True)


@BOTTLENECKS.register("pre+oce+mff")
def ocbe_bottleneck(spec: BackboneSpec, resnet: ResNet) -> nn.Module:
    """The full OCBE (the paper's model): multi-scale feature fusion + one-class embedding block."""
    return OCBE(spec.block, spec.ocbe_blocks, spec.base_width)


# Built from the spec alone: build_rd_model frees the teacher's unused layer4 and fc before building it.
ocbe_bottleneck.reads_resnet = False


def select_layers(feats: list[torch.Tensor], layers: tuple[int, ...]) -> list[torch.Tensor]:
    """The features of ``layers`` (1-based, Table 7) out of the three the teacher and the student give."""
    return [feats[i - 1] for i in layers]


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
    make_neck = BOTTLENECKS.get(bottleneck)
    resnet, weights_info = build_teacher(backbone, weights)
    teacher = Teacher(resnet)  # draws nothing
    if not getattr(make_neck, "reads_resnet", True):
        # layer4 and fc are drawn (the authors' RNG chain) but never used: freed before the student is built, so
        # building peaks at the model's own size, not at the authors' full ResNet plus the student (WRN50: 168 MB)
        resnet = None
    neck = make_neck(spec, resnet)
    decoder = Decoder(spec.block, spec.decoder_layers, spec.base_width)
    return RDModel(teacher, neck, decoder, weights_info, backbone, bottleneck)
