"""DeepMind's WideResNet with SiLU (Gowal et al. 2020), `dm-wrn-D-W`: the architecture of many RobustBench leaders.

29 of RobustBench's Linf CIFAR entries use it, from WRN-28-10 (Wang2023Better_WRN-28-10,
Gowal2021Improving_28_10_ddpm_100m) to WRN-106-16 (Rebuffi2021Fixing_106_16_cutmix_ddpm) and WRN-94-16
(Bartoldson2024Adversarial_WRN-94-16). RobustBench builds them with its own `Swish` or with nn.SiLU, the
same function x * sigmoid(x); none of its Linf CIFAR entries uses the class's default ReLU or input padding,
so rdist has neither.
Module names match RobustBench's `DMWideResNet` (init_conv, layer.G.block.B.{batchnorm_0, conv_0,
batchnorm_1, conv_1, shortcut}, batchnorm, logits), so their checkpoints load with strict=True.

It differs from `wrn-D-W` in three ways that change the outputs: SiLU (= Swish) instead of ReLU;
the first convolution of a block pads explicitly, asymmetrically (0,1,0,1) when it strides, as
TensorFlow's "SAME" padding does; and a block that changes width feeds its pre-activated input to
both branches. The input normalisation RobustBench keeps inside this model lives in
`NormalizedModel` here (create_model(..., mean=, std=)), like every other rdist architecture.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.errors import RdistError
from rdist.models.registry import register_pattern


def same_padding(stride: int) -> tuple[int, int, int, int]:
    """TensorFlow's "SAME" for a 3x3 kernel, as DeepMind's models pad: symmetric at stride 1, only right and
    bottom at stride 2."""
    return (1, 1, 1, 1) if stride == 1 else (0, 1, 0, 1)


class _Block(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.batchnorm_0 = nn.BatchNorm2d(in_planes)
        self.relu_0 = nn.SiLU()
        self.conv_0 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=0, bias=False)
        self.batchnorm_1 = nn.BatchNorm2d(out_planes)
        self.relu_1 = nn.SiLU()
        self.conv_1 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.has_shortcut = in_planes != out_planes
        self.shortcut = nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False) if self.has_shortcut else None
        self._pad = same_padding(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = self.relu_0(self.batchnorm_0(x))
        # A width-changing block adds the projection of the ACTIVATED input; the others add the raw input.
        residual = self.shortcut(activated) if self.has_shortcut else x
        out = self.conv_0(F.pad(activated, self._pad))
        out = self.conv_1(self.relu_1(self.batchnorm_1(out)))
        return residual + out


class _BlockGroup(nn.Module):
    def __init__(self, num_blocks: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.block = nn.Sequential(*[_Block(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1)
                                     for i in range(num_blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DMWideResNet(nn.Module):
    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise RdistError(f"dm-wrn-{depth}-{width}: depth {depth} is not valid; (D-4) must be divisible by 6 "
                             "and positive (e.g. dm-wrn-28-10, dm-wrn-70-16)")
        if width < 1:
            raise RdistError(f"dm-wrn-{depth}-{width}: the width factor must be >= 1")
        n = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.init_conv = nn.Conv2d(in_channels, channels[0], 3, stride=1, padding=1, bias=False)
        self.layer = nn.Sequential(_BlockGroup(n, channels[0], channels[1], 1),
                                   _BlockGroup(n, channels[1], channels[2], 2),
                                   _BlockGroup(n, channels[2], channels[3], 2))
        self.batchnorm = nn.BatchNorm2d(channels[3])
        self.relu = nn.SiLU()
        self.logits = nn.Linear(channels[3], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.batchnorm(self.layer(self.init_conv(x))))
        # The reference pools with an 8x8 window, which is global at 32x32; adaptive pooling is the
        # same there and also serves other input sizes.
        return self.logits(F.adaptive_avg_pool2d(out, 1).flatten(1))


@register_pattern(r"dm-wrn-(\d+)-(\d+)", example="dm-wrn-28-10")
def dm_wide_resnet(depth: int, width: int, num_classes: int = 10, in_channels: int = 3) -> DMWideResNet:
    return DMWideResNet(depth, width, num_classes, in_channels)
