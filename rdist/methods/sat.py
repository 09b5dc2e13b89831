"""SAT, Madry et al. PGD adversarial training (ICLR 2018).

    xa   = argmax_{|xa - x|_inf <= eps} CE(S(xa), y)     uniform start U(-eps, eps), BN in eval mode
    loss = CE(S(xa), y)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.methods.base import Batch, Method, Recipe


class SAT(Method):
    name = "sat"
    kind = "teacher"
    bn_mode = "eval"
    defaults = {}
    # IAD's PyTorch teacher recipe.
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)

    def perturb(self, student: nn.Module, batch: Batch) -> torch.Tensor:
        return self.ce_pgd(student, batch, start="uniform")

    def loss(self, student: nn.Module, batch: Batch, xa: torch.Tensor | None) -> torch.Tensor:
        return F.cross_entropy(student(xa), batch.y)
