"""DeepMind's pre-activation ResNet with SiLU (Rebuffi et al. 2021), `dm-preactresnet18` / `dm-preactresnet34`.

The ResNet-18 teachers of RobustBench's DeepMind-lineage entries use it (Rebuffi2021Fixing_R18_ddpm,
Gowal2021Improving_R18_ddpm_100m, Rade2021Helper_R18_*). Module names match RobustBench's `DMPreActResNet`
(conv_2d, layer_0..3 of blocks {batchnorm_0, conv_2d_1, batchnorm_1, conv_2d_2, shortcut}, batchnorm,
logits), so its checkpoints load with strict=True.

It is not `preactresnet18` with another activation. Like `dm-wrn-D-W` it pads the strided convolution
asymmetrically, (0,1,0,1), as TensorFlow's "SAME" padding does; unlike it, and unlike every other rdist
ResNet, the projection shortcut is a 3x3 convolution (not 1x1), it reads the block's raw input (not the
pre-activated one) and it is padded the same way. RobustBench's activation is its own `Swish` or
`nn.SiLU`: the same function, x * sigmoid(x), so SiLU serves both. The input normalisation RobustBench
keeps inside this model lives in `NormalizedModel` (create_model(..., mean=, std=)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.models.dm_wide_resnet import same_padding
from rdist.models.registry import register_pattern
from rdist.utils import unknown

_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


class _Block(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.relu_0 = nn.SiLU()
        self.conv_2d_1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.relu_1 = nn.SiLU()
        self.conv_2d_2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.has_shortcut = stride != 1 or in_planes != out_planes
        self.shortcut = (nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
                         if self.has_shortcut else None)
        self._pad = same_padding(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu_0(self.batchnorm_0(x))
        # The projection reads the raw input, padded as the main branch is: DeepMind's code does so.
        shortcut = self.shortcut(F.pad(x, self._pad)) if self.has_shortcut else x
        out = self.conv_2d_1(F.pad(out, self._pad))
        out = self.conv_2d_2(self.relu_1(self.batchnorm_1(out)))
        return out + shortcut


class DMPreActResNet(nn.Module):
    def __init__(self, depth: int = 18, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth not in _BLOCKS:
            raise unknown("dm-preactresnet depth", str(depth), [str(d) for d in _BLOCKS])
        self.conv_2d = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        layers, in_planes = [], 64
        for planes, n, stride in zip((64, 128, 256, 512), _BLOCKS[depth], (1, 2, 2, 2)):
            layers.append(nn.Sequential(*[_Block(in_planes if i == 0 else planes, planes, stride if i == 0 else 1)
                                          for i in range(n)]))
            in_planes = planes
        self.layer_0, self.layer_1, self.layer_2, self.layer_3 = layers
        self.batchnorm = nn.BatchNorm2d(512)
        self.relu = nn.SiLU()
        self.logits = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv_2d(x)
        out = self.layer_3(self.layer_2(self.layer_1(self.layer_0(out))))
        out = self.relu(self.batchnorm(out))
        # The reference pools with a 4x4 window, global at 32x32; adaptive pooling equals it there.
        return self.logits(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_pattern(r"dm-preactresnet(18|34)", example="dm-preactresnet18")
def dm_preact_resnet(depth: int, num_classes: int = 10, in_channels: int = 3) -> DMPreActResNet:
    return DMPreActResNet(depth, num_classes, in_channels)
