"""ARD, adversarially robust distillation (Goldblum et al., AAAI 2020).

Paper: https://arxiv.org/abs/1905.09747
Official code: https://github.com/goldblum/AdversariallyRobustDistillation

    xa   = argmax CE(S(xa), y)                     uniform start; BN in TRAIN mode (as the official code)
    loss = alpha * tau^2 * kl_scale * KLbm(T(x)/tau || S(xa)/tau) + (1 - alpha) * CE(S(x), y)

Paper preset alpha 1, tau 30, kl_scale 1/C. The official code reduces its KL by element mean
(KLbm / C); C is known only from the logits, so the default `kl_scale=None` means 1/C.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


@register_method
class ARD(Method):
    name = "ard"
    teachers = (ROBUST,)
    bn_mode = "train"
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    about = About("Goldblum et al., AAAI 2020", "PGD-10 on CE(S(xa), y), uniform start",
                  "tau^2 KL(T(x)/tau || S(xa)/tau), tau 30", url="https://arxiv.org/abs/1905.09747",
                  code="https://github.com/goldblum/AdversariallyRobustDistillation")
    # The TRADES WRN-34-10, the CIFAR-10 teacher of ARD in its paper and in the RSLAD and IAD comparisons.
    paper_teachers = {ROBUST: {"cifar10": "Zhang2019Theoretically"}}

    alpha: float = 1.0  # weight of the distillation term
    tau: float = 30.0  # distillation temperature
    kl_scale: float | None = None  # scale of the KL terms (KLbm units); None: 1/C, the official element mean

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        return self.ce_pgd(student, step, start="uniform")

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        adversarial = student(xa)
        # S(x) runs even when alpha = 1 (weight 0): in train mode it feeds clean statistics into the
        # BN running averages, exactly as the official code's forward does.
        return self.distil(step, adversarial, student(step.x))

    def distil(self, step: Step, adversarial: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The loss from the student's logits on the adversarial and the clean batch (IGDM's own ARD passes
        those of its forward probe as the adversarial ones)."""
        with torch.no_grad():
            teacher = step.teachers[ROBUST](step.x)
        kl_scale = self.kl_scale if self.kl_scale is not None else 1.0 / adversarial.shape[1]
        return (self.alpha * self.tau ** 2 * kl_scale * kl_batchmean(teacher, adversarial, self.tau)
                + (1 - self.alpha) * step.cross_entropy(clean))
