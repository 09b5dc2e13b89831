"""IAD-I (Zhu et al., ICLR 2022): ARD whose student learns to distrust the teacher where the teacher is wrong.

Paper: https://openreview.net/forum?id=u6TRGdzhfip
Official code: https://github.com/ZFancy/IAD

Inner attack as ARD: maximise CE(S(xa), y) from a uniform start, student BN in train mode.
Outer loss, in KLbm units (the official code's `(1/B) * sum`, so kl_scale 1 reproduces it):
    warm-up (epochs 1..warmup_epoch):  KLbm(T(x) || S(xa))                       (ARD with a=1, tau=1)
    after:                             KLbm(T(x) || S(xa)) + mean_i[(1 - w_i) KL_i(S(x) || S(xa))]
with the trust weight w_i = p(T(xa_i))[y_i] ** beta. The teacher term is not weighted by w (paper footnote
and code agree), and S(x) is a live target: the gradient flows through both sides of the introspection term.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


def trust_weight(teacher_adv_logits: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """w_i = p(T(xa_i))[y_i] ** beta, shape (B,): how much the teacher deserves trust on example i.

    A constant of the loss: it carries no gradient, whatever the logits it is given.
    """
    p_true = F.softmax(teacher_adv_logits.detach().float(), dim=1).gather(1, y[:, None]).squeeze(1)
    return p_true.pow(beta)


def warming_up(step: Step, warmup_epoch: float) -> bool:
    """Whether the run is still in its plain-distillation warm-up (w = 1).

    The official scripts count epochs from 0 and introspect `if epoch >= begin`; with rdist's 1-based
    `step.epoch` that is `step.epoch > warmup_epoch`, so the first `warmup_epoch` epochs are warm-up.
    """
    return step.epoch <= warmup_epoch


@register_method
class IADI(Method):
    name = "iad-i"
    bn_mode = "train"
    teachers = (ROBUST,)
    aliases = ("iad",)  # the IAD paper's method (IAD-II stays explicit)
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    about = About("Zhu et al., ICLR 2022", "PGD-10 on CE(S(xa), y), uniform start",
                  "KL(T(x) || S(xa)) + (1 - w) KL(S(x) || S(xa)), w the teacher's trust",
                  url="https://openreview.net/forum?id=u6TRGdzhfip", code="https://github.com/ZFancy/IAD")
    # The IAD paper's CIFAR-10 teacher, the TRADES WRN-34-10.
    paper_teachers = {ROBUST: {"cifar10": "Zhang2019Theoretically"}}

    beta: float = 0.1  # exponent of IAD's trust weight
    warmup_epoch: float = 60.0  # epochs of plain distillation before IAD's introspection term
    kl_scale: float = 1.0  # scale of the KL terms (KLbm units)

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        return self.ce_pgd(student, step, start="uniform")

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        teacher = step.teachers[ROBUST]
        with torch.no_grad():
            teacher_clean = teacher(step.x)
        # BN's running statistics see what the official loop's train-mode forwards show them: S(xa) twice (its
        # unused `basicop`), then S(x) once in warm-up (a weight-0 CE) and twice after (the live KL target and
        # that CE). The unused forwards run without a graph.
        student_adv = student(xa)
        with torch.no_grad():
            student(xa)
        student_clean = student(step.x)
        distill = kl_batchmean(teacher_clean, student_adv)
        if warming_up(step, self.warmup_epoch):
            return self.kl_scale * distill
        with torch.no_grad():
            student(step.x)
            w = trust_weight(teacher(xa), step.y, self.beta)
        introspect = ((1 - w) * kl_per_sample(student_clean, student_adv)).mean()
        return self.kl_scale * (distill + introspect)
