"""MART, misclassification-aware adversarial training (Wang et al., ICLR 2020).

Paper: https://openreview.net/forum?id=rklOg6EFwS
Official code: https://github.com/YisenWang/MART

    xa   = argmax CE(S(xa), y)                              start x + 0.001 N(0, 1); BN eval
    loss = CE(S(xa), y) + NLL(log(1.0001 - p(S(xa))), y')   y' the most likely wrong class of S(xa)
         + beta * mean_i[ KL_i(S(x) || S(xa)) * (1 - p(S(x_i))_{y_i}) ]

beta is 6 for WideResNets (the default) and 5 for ResNet-18. `--recipe paper` picks the WideResNet setting
(weight decay 7e-4, lr 0.1, 100 epochs) for wrn-* students and the ResNet-18 one for every other architecture
(the paper's only other setting): the official train_resnet.py's lr 0.01, weight decay 3.5e-3, 120 epochs with
lr x0.1 at 75, 90 and 100 (docs/methods.md). Both attack as the official scripts, eps 0.031 and step 0.007.
As in the official code, neither the KL target S(x) nor the weight 1 - p_y is detached.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from rdist.methods.base import Method, Recipe, Step
from rdist.methods.losses import kl_per_sample
from rdist.methods.registry import register_method


@register_method
class MART(Method):
    name = "mart"
    kind = "teacher"
    bn_mode = "eval"
    recipe = Recipe(epochs=120, milestones=(75, 90, 100), weight_decay=3.5e-3, lr=0.01, eps=0.031,
                    step_size=0.007)  # ResNet-18
    wide_recipe: ClassVar[Recipe] = Recipe(epochs=100, milestones=(75, 90), weight_decay=7e-4, eps=0.031,
                                           step_size=0.007)

    beta: float = 6.0  # weight of the misclassification-aware KL term

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        if arch.startswith(("wrn-", "dm-wrn-")):
            return cls.wide_recipe, {"beta": 6.0}
        return cls.recipe, {"beta": 5.0}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        return self.ce_pgd(student, step, start="normal")

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        y = step.y
        clean, adversarial = student(step.x), student(xa)
        adv_probs = F.softmax(adversarial.float(), dim=1)
        wrong_class = adv_probs.detach().scatter(1, y[:, None], -1.0).argmax(1)
        boosted_ce = step.cross_entropy(adversarial) + F.nll_loss(torch.log(1.0001 - adv_probs), wrong_class)
        clean_true_prob = F.softmax(clean.float(), dim=1).gather(1, y[:, None]).squeeze(1)
        weighted_kl = (kl_per_sample(clean, adversarial) * (1 - clean_true_prob)).mean()
        return boosted_ce + self.beta * weighted_kl
