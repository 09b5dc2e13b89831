"""AdaAD (Huang et al., CVPR 2023): adaptive adversarial distillation, attacking where teacher and student disagree.

Paper: https://openaccess.thecvf.com/content/CVPR2023/html/Huang_Boosting_Accuracy_and_Robustness_of_Student_Models_via_Adaptive_Adversarial_CVPR_2023_paper.html
Official code: https://github.com/boyellow/AdaAD

Inner attack: maximise KL(p(T(xa)) || p(S(xa))) with the teacher re-evaluated at every iterate and the gradient
flowing through the teacher to xa, from x + 0.001 N(0, 1), student BN in eval mode. Outer loss:
    kl_scale * [ alpha KLbm(T(xa) || S(xa)) + (1 - alpha) KLbm(T(x) || S(x)) ],  alpha 1
The official CIFAR-10 code uses nn.KLDivLoss() (element mean, KLbm / 10): kl_scale 0.1, the default here.
Its CIFAR-100 code uses (1/B) * sum (KLbm): kl_scale 1, which `--recipe paper` picks on cifar100.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.attacks.pgd import pgd
from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


@register_method
class AdaAD(Method):
    name = "adaad"
    bn_mode = "eval"
    teachers = (ROBUST,)
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=5e-4)
    about = About("Huang et al., CVPR 2023", "PGD-10 on KL(T(xa) || S(xa)) through the teacher",
                  "KL(T(xa) || S(xa))", code="https://github.com/boyellow/AdaAD",
                  url="https://openaccess.thecvf.com/content/CVPR2023/html/Huang_Boosting_Accuracy_and_Robustness_of_"
                      "Student_Models_via_Adaptive_Adversarial_CVPR_2023_paper.html")
    # The official README (github.com/boyellow/AdaAD): LTD's WRN-34-20 on CIFAR-10, WRN-34-10 on CIFAR-100.
    paper_teachers = {ROBUST: {"cifar10": "Chen2021LTD_WRN34_20", "cifar100": "Chen2021LTD_WRN34_10"}}

    alpha: float = 1.0  # weight of the adversarial term against the clean one
    kl_scale: float = 0.1  # scale of the KL terms (KLbm units)

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        return cls.recipe, {"kl_scale": 1.0 if dataset == "cifar100" else 0.1}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        # No no_grad around the teacher: its gradient is half of what steers xa.
        teacher = step.teachers[ROBUST]
        return pgd(lambda xa: kl_per_sample(teacher(xa), student(xa)).sum(), step.x, eps=self.eps,
                   step_size=self.step_size, steps=self.attack_steps, start="normal", generator=step.generator,
                   clamp_start=False)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        # S(x) runs first even at alpha 1, where its term has weight 0 (then without a graph): in train mode it
        # feeds the clean batch into BN's running statistics before the adversarial one, as the official loop.
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.alpha != 1):
            student_clean = student(step.x)
        teacher = step.teachers[ROBUST]
        with torch.no_grad():
            teacher_adv = teacher(xa)
        loss = self.alpha * kl_batchmean(teacher_adv, student(xa))
        if self.alpha != 1:  # the clean teacher forward is only needed when its term counts
            with torch.no_grad():
                teacher_clean = teacher(step.x)
            loss = loss + (1 - self.alpha) * kl_batchmean(teacher_clean, student_clean)
        return self.kl_scale * loss
