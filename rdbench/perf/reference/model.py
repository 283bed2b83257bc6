"""The authors' model (reference mode, see ``rdbench.perf.reference``): a full torchvision ResNet encoder that
computes layer4 and discards it, their bottleneck and decoder, built from scratch or from an rdbench model."""

from __future__ import annotations

import torch
from torch import nn

from rdbench.models.backbones import BACKBONES, build_teacher
from rdbench.models.decoder import Decoder
from rdbench.models.rd import BOTTLENECKS, RDModel

__all__ = ["ReferenceEncoder", "ReferenceModel", "build_reference_model", "reference_model_from"]


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
