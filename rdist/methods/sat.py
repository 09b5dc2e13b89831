"""SAT, Madry et al. PGD adversarial training (ICLR 2018).

Paper: https://arxiv.org/abs/1706.06083
Official code: https://github.com/MadryLab/cifar10_challenge (TensorFlow); the recipe and the clamped start follow
the PyTorch teacher script of IAD, https://github.com/ZFancy/IAD (pre_train/AT.py).

    xa   = argmax_{|xa - x|_inf <= eps} CE(S(xa), y)     uniform start U(-eps, eps) clamped to [0, 1], BN eval
    loss = CE(S(xa), y)

Madry et al.'s method bounds any norm: `--norm L2` attacks in the L2 ball with normalised gradient steps (as
MadryLab's robustness library trains its L2 models), from a uniform start in the ball.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.methods.base import Method, Recipe, Step
from rdist.methods.registry import register_method


@register_method
class SAT(Method):
    name = "sat"
    kind = "teacher"
    bn_mode = "eval"
    # IAD's PyTorch teacher recipe.
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    norms = ("Linf", "L2")

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        # The one training attack whose start is clamped to [0, 1]: IAD's AT.py (the teacher recipe) and
        # Madry's code clamp x + U(-eps, eps) before the first step.
        return self.ce_pgd(student, step, start="uniform", clamp_start=True)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        return step.cross_entropy(student(xa))
