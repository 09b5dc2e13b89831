"""Pre-activation WideResNet (Zagoruyko & Komodakis 2016), `wrn-D-W`, as in the TRADES and RobustBench code.

Module and buffer names match that code (conv1, block1..3 with `layer`, bn1, relu, fc; blocks
bn1/relu1/conv1/bn2/relu2/conv2/convShortcut), so the robust WRN-34-10 / WRN-28-10 / WRN-70-16
teachers published with TRADES, MART and RobustBench load with strict=True.

The TRADES WRN-34-10 also defines a `sub_block1` group that its forward never calls; its
checkpoint therefore holds those weights. Rather than carry 2.1M dead parameters (which would
also change the parameter count and what an optimiser sees), this model omits the group and
`drop_unused_keys` removes its keys from such checkpoints before loading.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from rdist.errors import RdistError
from rdist.models.registry import register_pattern


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = in_planes == out_planes
        self.convShortcut = None if self.equal_in_out else nn.Conv2d(in_planes, out_planes, 1, stride=stride,
                                                                      bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The first block of a group changes width, and its projection shortcut reads the
        # pre-activated input; the others add the raw input. The reference code does exactly this,
        # and the checkpoints were trained with it.
        out = self.relu1(self.bn1(x))
        shortcut = x if self.equal_in_out else self.convShortcut(out)
        out = self.conv2(self.relu2(self.bn2(self.conv1(out))))
        return shortcut + out


class NetworkBlock(nn.Module):
    def __init__(self, num_layers: int, in_planes: int, out_planes: int, stride: int):
        super().__init__()
        # A Sequential under the name `layer` gives the reference keys `blockK.layer.i.*`.
        self.layer = nn.Sequential(*[BasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                                stride if i == 0 else 1) for i in range(num_layers)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x)


class WideResNet(nn.Module):
    def __init__(self, depth: int = 34, widen_factor: int = 10, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if depth < 10 or (depth - 4) % 6 != 0:
            raise RdistError(f"wrn-{depth}-{widen_factor}: depth {depth} is not valid; (D-4) must be divisible by 6 "
                             f"and positive, with (D-4)/6 blocks per group (e.g. wrn-16, 22, 28, 34, 40, 70)")
        if widen_factor < 1:
            raise RdistError(f"wrn-{depth}-{widen_factor}: the width factor must be >= 1")
        n = (depth - 4) // 6
        widths = [16, 16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, stride=1, padding=1, bias=False)
        self.block1 = NetworkBlock(n, widths[0], widths[1], 1)
        self.block2 = NetworkBlock(n, widths[1], widths[2], 2)
        self.block3 = NetworkBlock(n, widths[2], widths[3], 2)
        self.bn1 = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = nn.Linear(widths[3], num_classes)
        # The reference initialisation (He normal over fan-out, zero linear bias): training from
        # scratch with PyTorch's default init gives a different, not comparable, teacher.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn1(out))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


def drop_unused_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A copy of `state_dict` without the `sub_block1.*` keys of the TRADES checkpoint.

    Safe because the TRADES forward never calls `sub_block1`: those weights never touch an output.
    """
    return {k: v for k, v in state_dict.items() if not k.startswith("sub_block1.")}


@register_pattern(r"wrn-(\d+)-(\d+)", example="wrn-34-10")
def wide_resnet(depth: int, widen_factor: int, num_classes: int = 10, in_channels: int = 3) -> WideResNet:
    return WideResNet(depth, widen_factor, num_classes, in_channels)
