"""Natural training: plain cross-entropy on clean inputs, no inner attack.

Paper: none (standard training). Official code: none.

    loss = CE(S(x), y)

Trains the naturally trained teacher `Tstd` that AKD2 and IAD-II need.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.methods.base import Method, Recipe, Step
from rdist.methods.registry import register_method


@register_method
class Natural(Method):
    name = "natural"
    kind = "teacher"
    # No attack runs, so the spec gives no BN mode; "train" spares the engine a pointless mode switch.
    bn_mode = "train"
    select_metric = "clean"
    recipe = Recipe(epochs=100, milestones=(75, 90), weight_decay=5e-4)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        return step.cross_entropy(student(step.x))
