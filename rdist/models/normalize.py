"""Per-channel input normalisation as the first layer of a model.

Attacks, eps-balls and clamping all live in [0,1] pixel space. A model trained on normalised
inputs (RobustBench teachers are) therefore carries the normalisation inside itself, so that no
caller has to remember it and gradients flow through it to the pixels.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


class NormalizedModel(nn.Module):
    def __init__(self, model: nn.Module, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.model = model
        # Buffers, not constants: they follow .to(device) and are saved with the weights, so a
        # checkpoint records the statistics its weights were trained with.
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)
