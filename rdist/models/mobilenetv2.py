"""MobileNetV2 (Sandler et al. 2018) in the CIFAR layout of the RSLAD/ARD/IAD students.

Differences from the ImageNet network, all taken from the distillation papers' code (kuangliu
pytorch-cifar), so that student numbers stay comparable with theirs:
- a 3x3 stride-1 stem and stride 1 in the second stage, since 32x32 inputs are already small;
- ReLU instead of ReLU6;
- a 1x1 conv + BN projection shortcut on stride-1 blocks that change width (the paper has no
  shortcut there), identity on stride-1 blocks that keep it, none on stride-2 blocks;
- the expand 1x1 conv is kept even at expansion 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.models.registry import register_model

# (expansion t, output channels c, blocks n, first stride s) per stage.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, expansion: int, stride: int):
        super().__init__()
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        if stride != 1:
            self.shortcut = None
        elif in_planes == out_planes:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return out if self.shortcut is None else out + self.shortcut(x)


class MobileNetV2(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        blocks = []
        in_planes = 32
        for t, c, n, s in STAGES:
            for stride in [s] + [1] * (n - 1):
                blocks.append(InvertedResidual(in_planes, c, t, stride))
                in_planes = c
        self.layers = nn.Sequential(*blocks)
        self.conv2 = nn.Conv2d(in_planes, 1280, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(1280)
        self.linear = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.relu(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int = 10, in_channels: int = 3) -> MobileNetV2:
    return MobileNetV2(num_classes, in_channels)
