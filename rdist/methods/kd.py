"""Hinton knowledge distillation on clean inputs (Hinton et al., 2015), the non-robust baseline.

Paper: https://arxiv.org/abs/1503.02531
Official code: none.

    loss = alpha * tau^2 * KLbm(T(x)/tau || S(x)/tau) + (1 - alpha) * CE(S(x), y)

alpha 0.9 and tau 4 are the customary Hinton-KD choices for CIFAR (no single paper preset exists);
the recipe is the 200-epoch distillation recipe with weight decay 5e-4, a rdist choice.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


@register_method
class KD(Method):
    name = "kd"
    teachers = (ROBUST,)
    # No attack runs, so the spec gives no BN mode; "train" spares the engine a pointless mode switch.
    bn_mode = "train"
    select_metric = "clean"
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=5e-4)
    about = About("Hinton et al., 2015", "none (clean inputs)", "a tau^2 KL(T(x)/tau || S(x)/tau) + (1 - a) CE",
                  url="https://arxiv.org/abs/1503.02531")

    alpha: float = 0.9  # weight of the distillation term
    tau: float = 4.0  # distillation temperature

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            teacher = step.teachers[ROBUST](step.x)
        student_logits = student(step.x)
        return (self.alpha * self.tau ** 2 * kl_batchmean(teacher, student_logits, self.tau)
                + (1 - self.alpha) * step.cross_entropy(student_logits))
