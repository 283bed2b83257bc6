"""Student decoder: a mirrored ResNet without stem, upsampling with 2x2 transposed convolutions.

Mirrors the authors' ``de_resnet`` module for module (names, construction order, init loop), so the
same seed gives the same weights.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1, conv3x3

from rdbench.models.ocbe import init_like_authors


def deconv2x2(in_planes: int, out_planes: int, stride: int = 1, groups: int = 1) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(in_planes, out_planes, kernel_size=2, stride=stride, groups=groups, bias=False)


class DeBasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, upsample: nn.Module | None = None,
                 base_width: int = 64):
        super().__init__()
        if base_width != 64:
            raise ValueError("DeBasicBlock only supports base_width=64")
        self.conv1 = deconv2x2(inplanes, planes, stride) if stride == 2 else conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class DeBottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, upsample: nn.Module | None = None,
                 base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0))
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = deconv2x2(width, width, stride) if stride == 2 else conv3x3(width, width, stride)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class Decoder(nn.Module):
    """512e channels at 1/32 -> [1/4, 1/8, 1/16] maps shaped like the teacher's [layer1, layer2, layer3]."""

    def __init__(self, teacher_block: type, layers: tuple[int, int, int], base_width: int = 64):
        super().__init__()
        block = DeBasicBlock if teacher_block is BasicBlock else DeBottleneck
        self.base_width = base_width
        self.inplanes = 512 * block.expansion
        self.layer1 = self._make_layer(block, 256, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1])
        self.layer3 = self._make_layer(block, 64, layers[2])
        init_like_authors(self)  # touches nn.Conv2d only: the deconvolutions keep PyTorch's default init

    def _make_layer(self, block: type, planes: int, blocks: int) -> nn.Sequential:
        upsample = nn.Sequential(deconv2x2(self.inplanes, planes * block.expansion, 2),
                                 nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, 2, upsample, self.base_width)]
        self.inplanes = planes * block.expansion
        for _ in range(1, blocks):
            layers.append(block(self.inplanes, planes, base_width=self.base_width))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        a = self.layer1(x)
        b = self.layer2(a)
        c = self.layer3(b)
        return [c, b, a]
