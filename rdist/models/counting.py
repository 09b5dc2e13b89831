"""What an architecture costs per image: its parameters and the multiply-accumulates of one forward pass."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rdist.device import model_device
from rdist.models.registry import create_model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one image of `input_shape` (C, H, W).

    FlopCounterMode counts the matrix products and convolutions, at 2 FLOPs per multiply-accumulate;
    element-wise layers (BN, ReLU, pooling) are not counted, as is usual for MACs.
    """
    x = torch.zeros(1, *input_shape, device=model_device(model))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def arch_macs(arch: dict[str, Any], input_shape: Sequence[int]) -> int:
    """MACs per image of the architecture `arch` (create_model's arguments), built on the meta device: no
    memory is allocated, so a WRN-70-16 costs nothing to count."""
    with torch.device("meta"):
        model = create_model(arch["name"], **{k: v for k, v in arch.items() if k != "name" and v is not None})
    return count_macs(model, input_shape)
