"""RSLAD (Zi et al., ICCV 2021): distil the robust teacher's CLEAN soft labels, on clean and adversarial inputs.

Paper: https://arxiv.org/abs/2108.07969
Official code: https://github.com/zibojia/RSLAD

Inner attack: maximise KL(p(T(x)) || p(S(xa))) with T(x) fixed during the attack, from x + 0.001 N(0, 1),
student BN in eval mode. Outer loss, no CE and no temperature:
    kl_scale * [ 5/6 KLbm(T(x) || S(xa)) + 1/6 KLbm(T(x) || S(x)) ]
The official code takes the element mean of the KL (KLbm / C, C = 10) on CIFAR-10 and 10x that on CIFAR-100,
so its effective scale is 1/10 on both: hence kl_scale 0.1.
"""

from __future__ import annotations

from dataclasses import field

import torch
from torch import nn

from rdist.attacks.pgd import pgd
from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


@register_method
class RSLAD(Method):
    name = "rslad"
    bn_mode = "eval"
    teachers = (ROBUST,)
    recipe = Recipe(epochs=300, milestones=(215, 260, 285), weight_decay=2e-4)
    about = About("Zi et al., ICCV 2021", "PGD-10 on KL(T(x) || S(xa)), x + 0.001 N(0, 1) start",
                  "5/6 KL(T(x) || S(xa)) + 1/6 KL(T(x) || S(x))", url="https://arxiv.org/abs/2108.07969",
                  code="https://github.com/zibojia/RSLAD")
    # The official README's teachers: the TRADES WRN-34-10 (CIFAR-10) and Gowal et al.'s WRN-70-16 (CIFAR-100).
    paper_teachers = {ROBUST: {"cifar10": "Zhang2019Theoretically", "cifar100": "Gowal2020Uncovering_extra"}}

    kl_scale: float = 0.1  # scale of the KL terms (KLbm units)
    _soft_labels: tuple[Step, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def soft_labels(self, step: Step) -> torch.Tensor:
        """T(x), computed once per batch: the attack and the loss share it, and one forward of a large
        teacher costs about as much as ten of the student."""
        if self._soft_labels is None or self._soft_labels[0] is not step:
            with torch.no_grad():
                self._soft_labels = (step, step.teachers[ROBUST](step.x))
        return self._soft_labels[1]

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        teacher_clean = self.soft_labels(step)
        return pgd(lambda xa: kl_per_sample(teacher_clean, student(xa)).sum(), step.x, eps=self.eps,
                   step_size=self.step_size, steps=self.attack_steps, start="normal", generator=step.generator,
                   clamp_start=False)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        teacher_clean = self.soft_labels(step)
        return self.kl_scale * (5 / 6 * kl_batchmean(teacher_clean, student(xa))
                                + 1 / 6 * kl_batchmean(teacher_clean, student(step.x)))
