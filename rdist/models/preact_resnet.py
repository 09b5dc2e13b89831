"""Pre-activation ResNet-18 (He et al. 2016, "Identity mappings"), CIFAR layout, in RobustBench's two variants.

`preactresnet18` is the variant used for adversarial training by Rice et al. (robust_overfitting),
RobustBench's `PreActBlockV2` with `bn_before_fc=True`: the projection shortcut reads the
pre-activated input, as in the paper, and the network ends with BN + ReLU before pooling. The
kuangliu original omits that final BN and so leaves the last residual sum un-normalised.

`preactresnet18-wong` is RobustBench's `PreActResNet(PreActBlock, [2, 2, 2, 2])` as it ships the
`Wong2020Fast` and `Andriushchenko2020Understanding` models: its projection shortcut reads the block's
raw input (not the pre-activated one) and it has no BN + ReLU before pooling. Both differences change
the outputs, so its checkpoints need this variant.

Key names are shared with those codes, so their checkpoints load.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.models.registry import register_model


class PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, activated_shortcut: bool = True):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        # An identity shortcut has no module, so the checkpoints hold no key for it.
        self.shortcut = (nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False))
                         if stride != 1 or in_planes != planes else None)
        self.activated_shortcut = activated_shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        if self.shortcut is None:
            shortcut = x
        else:
            shortcut = self.shortcut(out if self.activated_shortcut else x)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + shortcut


class PreActResNet(nn.Module):
    def __init__(self, num_blocks: list[int], num_classes: int = 10, in_channels: int = 3,
                 activated_shortcut: bool = True, bn_before_fc: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        in_planes = 64
        stages = []
        for planes, n, stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)):
            blocks = []
            for s in [stride] + [1] * (n - 1):
                blocks.append(PreActBlock(in_planes, planes, s, activated_shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.bn = nn.BatchNorm2d(in_planes) if bn_before_fc else None
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        if self.bn is not None:
            out = F.relu(self.bn(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


@register_model("preactresnet18")
def preactresnet18(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels)


@register_model("preactresnet18-wong")
def preactresnet18_wong(num_classes: int = 10, in_channels: int = 3) -> PreActResNet:
    return PreActResNet([2, 2, 2, 2], num_classes, in_channels, activated_shortcut=False, bn_before_fc=False)
