"""The reduced ResNet-18 of GEM (Lopez-Paz & Ranzato 2017), as a feature extractor.

GEM's ``model/common.py``: a 3x3 stem convolution with ``nf`` filters and stride 1 (CIFAR-sized inputs,
no max pool), batch norm and ReLU; four stages of two ``BasicBlock`` s with ``nf, 2nf, 4nf, 8nf`` filters
and strides 1, 2, 2, 2; a 1x1 convolution + batch norm on the shortcut where the shape changes; then
average pooling and a linear classifier. Differences here: the final pooling is adaptive average
pooling to 1x1 (GEM's ``avg_pool2d(out, 4)`` is the same on 32x32 inputs, and this works for any
input size), GEM's ``x.view(bsz, 3, 32, 32)`` is dropped, and there is no classifier: the model
returns the ``[batch, 8 * nf]`` features, clnp adds one head per task.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution, padding 1, no bias (batch norm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm; the shortcut is the identity or a 1x1 conv + batch norm."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return F.relu(out)


class ResNet18(nn.Module):
    """GEM's reduced ResNet-18 without its classifier: ``[batch, in_channels, H, W] -> [batch, 8 * nf]``."""

    def __init__(self, nf: int = 20, in_channels: int = 3):
        super().__init__()
        if nf < 1 or in_channels < 1:
            raise ValueError(f"resnet18 needs nf >= 1 and in_channels >= 1, got nf={nf}, in_channels={in_channels}")
        self.nf = nf
        self.conv1 = conv3x3(in_channels, nf)
        self.bn1 = nn.BatchNorm2d(nf)
        stages, in_planes = [], nf
        for planes, stride in ((nf, 1), (2 * nf, 2), (4 * nf, 2), (8 * nf, 2)):
            stages.append(nn.Sequential(BasicBlock(in_planes, planes, stride), BasicBlock(planes, planes, 1)))
            in_planes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.flatten(self.pool(out))


def resnet18(nf: int = 20, in_channels: int = 3) -> nn.Module:
    """GEM's reduced ResNet-18 with ``nf`` base filters, returning ``[batch, 8 * nf]`` features."""
    return ResNet18(nf, in_channels)
