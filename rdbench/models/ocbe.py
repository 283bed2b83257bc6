"""One-class bottleneck embedding (OCBE): multi-scale feature fusion + one-class embedding layer.

Mirrors the authors' ``BN_layer`` module for module, in construction order, so that the same seed
yields the same initial weights (checked against their code by ``rdbench parity``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torchvision.models.resnet import conv1x1, conv3x3


def init_like_authors(module: nn.Module) -> None:
    """The authors' init loop: kaiming-normal for every ``nn.Conv2d`` (not ConvTranspose2d, which is
    not a subclass), BN weight 1 / bias 0, in registration order."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)


class OCBE(nn.Module):
    """MFF (conv1/bn1 -> conv2/bn2 on layer1, conv3/bn3 on layer2, concat with layer3) then the OCE
    layer (``bn_layer``: ResNet blocks of 512 planes, stride 2) -> 512e channels at 1/32 scale."""

    def __init__(self, block: type, blocks: int, base_width: int = 64):
        super().__init__()
        e = block.expansion
        self.base_width = base_width
        self.bn_layer = self._make_oce_layer(block, inplanes=256 * e, planes=512, blocks=blocks)
        self.conv1 = conv3x3(64 * e, 128 * e, 2)
        self.bn1 = nn.BatchNorm2d(128 * e)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(128 * e, 256 * e, 2)
        self.bn2 = nn.BatchNorm2d(256 * e)
        self.conv3 = conv3x3(128 * e, 256 * e, 2)
        self.bn3 = nn.BatchNorm2d(256 * e)
        # Never used in forward, but constructed (RNG draws) and counted as in the authors' code.
        self.conv4 = conv1x1(1024 * e, 512 * e, 1)
        self.bn4 = nn.BatchNorm2d(512 * e)
        init_like_authors(self)

    def _make_oce_layer(self, block: type, inplanes: int, planes: int, blocks: int) -> nn.Sequential:
        # The first block takes the concatenation of three 256e-channel maps (hence 3 * inplanes);
        # the downsample is built before the block, as torchvision's _make_layer does.
        downsample = nn.Sequential(conv1x1(inplanes * 3, planes * block.expansion, 2),
                                   nn.BatchNorm2d(planes * block.expansion))
        layers = [block(inplanes * 3, planes, 2, downsample, 1, self.base_width, 1, nn.BatchNorm2d)]
        for _ in range(1, blocks):
            layers.append(block(planes * block.expansion, planes, base_width=self.base_width,
                                norm_layer=nn.BatchNorm2d))
        return nn.Sequential(*layers)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        l1 = self.relu(self.bn2(self.conv2(self.relu(self.bn1(self.conv1(feats[0]))))))
        l2 = self.relu(self.bn3(self.conv3(feats[1])))
        return self.bn_layer(torch.cat([l1, l2, feats[2]], dim=1)).contiguous()


class Layer4Bottleneck(nn.Module):
    """Table 5 ablations: the teacher's pretrained layer4 applied to layer3 features, without MFF.

    ``trainable=False`` is the paper's "Pre" column (frozen); ``True`` is "Pre+OCE" (the same block,
    starting from the teacher's weights, trained as the one-class embedding).
    """

    def __init__(self, layer4: nn.Module, trainable: bool):
        super().__init__()
        self.layer = copy.deepcopy(layer4)
        self.trainable = trainable
        for p in self.layer.parameters():
            p.requires_grad_(trainable)

    def train(self, mode: bool = True) -> Layer4Bottleneck:
        super().train(mode and self.trainable)
        return self

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.layer(feats[2]).contiguous()
