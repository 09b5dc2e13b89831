"""Small CNNs for the 8x8 one-channel digits data set and for quick runs at 32x32.

ResNets down-sample 8x8 digits to 1x1 and are far larger than 1,797 images can support, so the
digits experiments use these: stages of conv3x3-BN-ReLU, a stride-2 convolution opening every
stage after the first, global average pooling (any input size from 8x8 up), and a linear head.
`smallcnn` plays the teacher and `tinycnn` the student.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rdist.models.registry import register_model


def _conv_bn_relu(in_planes: int, out_planes: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_planes), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, widths: Sequence[int], depths: Sequence[int], num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        layers = []
        in_planes = in_channels
        for stage, (width, depth) in enumerate(zip(widths, depths)):
            for i in range(depth):
                layers.append(_conv_bn_relu(in_planes, width, 2 if stage > 0 and i == 0 else 1))
                in_planes = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.pool(self.features(x)).flatten(1))


@register_model("smallcnn")
def smallcnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    # 8x8 -> 8 -> 4 -> 2: about 140k parameters.
    return SmallCNN((32, 64, 128), (2, 2, 1), num_classes, in_channels)


@register_model("tinycnn")
def tinycnn(num_classes: int = 10, in_channels: int = 3) -> SmallCNN:
    # About 24k parameters: a student several times smaller than smallcnn.
    return SmallCNN((16, 32, 64), (1, 1, 1), num_classes, in_channels)
