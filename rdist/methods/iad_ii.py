"""IAD-II (Zhu et al., ICLR 2022): IAD with a second, naturally trained teacher Tstd beside the robust Tadv.

Paper: https://openreview.net/forum?id=u6TRGdzhfip
Official code: https://github.com/ZFancy/IAD

Inner attack as ARD: maximise CE(S(xa), y) from a uniform start, student BN in train mode.
Outer loss (KL terms in KLbm units, the official `(1/B) * sum`; temperature 1 as in the official runs):
    warm-up (epochs 1..warmup_epoch):
        0.25 CE(S(xa), y) + 0.5 KLbm(Tadv(xa) || S(xa)) + 0.25 KLbm(Tstd(xa) || S(xa))
    after: the 0.5 term becomes
        mean_i[ w_i KL_i(Tadv(xa) || S(xa)) + (1 - w_i) KL_i(S(x) || S(xa)) ],  w_i = p(Tadv(xa_i))[y_i] ** beta
`kl_scale` multiplies the KL terms only. S(x) is a live target, as in IAD-I.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.iad_i import trust_weight, warming_up
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import register_method
from rdist.methods.roles import NATURAL, ROBUST

CE_WEIGHT, ADV_TEACHER_WEIGHT, STD_TEACHER_WEIGHT = 0.25, 0.5, 0.25


@register_method
class IADII(Method):
    name = "iad-ii"
    bn_mode = "train"
    teachers = (ROBUST, NATURAL)
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    about = About("Zhu et al., ICLR 2022", "PGD-10 on CE(S(xa), y), uniform start",
                  "0.25 CE + 0.5 trust-weighted KL(Tadv(xa)) + 0.25 KL(Tstd(xa))",
                  url="https://openreview.net/forum?id=u6TRGdzhfip", code="https://github.com/ZFancy/IAD")
    # The IAD paper's CIFAR-10 teacher, the TRADES WRN-34-10; its natural teacher is its own, and RobustBench's
    # naturally trained WRN-28-10 is the closest there is.
    paper_teachers = {ROBUST: {"cifar10": "Zhang2019Theoretically"}, NATURAL: {"cifar10": "Standard"}}

    beta: float = 0.1  # exponent of IAD's trust weight
    warmup_epoch: float = 40.0  # epochs of plain distillation before IAD's introspection term
    kl_scale: float = 1.0  # scale of the KL terms (KLbm units)

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        return self.ce_pgd(student, step, start="uniform")

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            adv_teacher, std_teacher = step.teachers[ROBUST](xa), step.teachers[NATURAL](xa)
        student_adv = student(xa)
        if warming_up(step, self.warmup_epoch):
            adv_term = kl_batchmean(adv_teacher, student_adv)
        else:
            w = trust_weight(adv_teacher, step.y, self.beta)
            adv_term = (w * kl_per_sample(adv_teacher, student_adv)
                        + (1 - w) * kl_per_sample(student(step.x), student_adv)).mean()
        std_term = kl_batchmean(std_teacher, student_adv)
        return (CE_WEIGHT * step.cross_entropy(student_adv)
                + self.kl_scale * (ADV_TEACHER_WEIGHT * adv_term + STD_TEACHER_WEIGHT * std_term))
