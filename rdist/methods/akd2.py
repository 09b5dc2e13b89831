"""AKD2, adversarial knowledge distillation with two teachers (Chen et al., ICLR 2021).

Paper: https://openreview.net/forum?id=qZzy5urZw9
Official code: https://github.com/VITA-Group/Alleviate-Robust-Overfitting

    xa   = argmax CE(S(xa), y)                     uniform start clamped into [0, 1]; BN in train mode
    loss = ce_weight * CE(S(xa), y)
         + natural_weight * tau^2 * KLbm(Tstd(xa)/tau || S(xa)/tau)
         + adv_weight     * tau^2 * KLbm(Tadv(xa)/tau || S(xa)/tau)

Tadv is the robust teacher, Tstd a naturally trained one (`rdist teacher train --method natural`).
Weights 0.3 / 0.1 / 0.6 and tau 2 are the paper's; the recipe averages weights (SWA) from the 56th epoch: the
official code averages from its 0-based epoch 55 (rdist counts epochs from 1).
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean
from rdist.methods.registry import register_method
from rdist.methods.roles import NATURAL, ROBUST


@register_method
class AKD2(Method):
    name = "akd2"
    teachers = (ROBUST, NATURAL)
    bn_mode = "train"
    recipe = Recipe(epochs=200, milestones=(50, 150), weight_decay=5e-4, swa_start=56)
    about = About("Chen et al., ICLR 2021", "PGD-10 on CE(S(xa), y), uniform start",
                  "0.3 CE + 0.1 KL(Tstd(xa)) + 0.6 KL(Tadv(xa)), tau 2, SWA",
                  url="https://openreview.net/forum?id=qZzy5urZw9",
                  code="https://github.com/VITA-Group/Alleviate-Robust-Overfitting")
    # The paper trains its own teachers, which RobustBench does not hold: the closest there are the TRADES
    # WRN-34-10 that the other methods of the family distil from, and its naturally trained WRN-28-10.
    paper_teachers = {ROBUST: {"cifar10": "Zhang2019Theoretically"}, NATURAL: {"cifar10": "Standard"}}

    tau: float = 2.0  # distillation temperature
    ce_weight: float = 0.3  # weight of CE(S(xa), y)
    natural_weight: float = 0.1  # weight of the natural teacher's term
    adv_weight: float = 0.6  # weight of the robust teacher's term

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        # advertorch's LinfPGDAttack(rand_init=True): delta ~ U(-eps, eps), then x + delta clamped into [0, 1].
        return self.ce_pgd(student, step, start="uniform", clamp_start=True)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            robust_teacher, natural_teacher = step.teachers[ROBUST](xa), step.teachers[NATURAL](xa)
        adversarial = student(xa)
        return (self.ce_weight * step.cross_entropy(adversarial)
                + self.natural_weight * self.tau ** 2 * kl_batchmean(natural_teacher, adversarial, self.tau)
                + self.adv_weight * self.tau ** 2 * kl_batchmean(robust_teacher, adversarial, self.tau))
