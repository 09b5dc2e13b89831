"""SAAD, sample-wise adaptive adversarial distillation (Lee and Chung, TMLR 2026).

Paper: https://arxiv.org/abs/2512.10275
Official code: https://github.com/HongsinLee/saad (saad.py, attacks.py `saad_inner_loss`, utils.py), read at 295121c.
It has no licence: this is written from the formulas.

Inner attack, student BN in eval mode: RSLAD's, against the clean teacher logits with the true class's logit
linearised around x, from x + 0.001 N(0, 1):
    maximise sum_i KL(p(T~_i) || p(S(xa_i))),  T~_i = T(x_i) + lambda_inner <g_i, xa_i - x_i> e_{y_i},
    g = d/dx sum_i T_{y_i}(x_i)    (one teacher forward and backward per batch; its T(x) is reused)
Outer loss, d = xa - x, with the teacher's Renyi entropy H_i of p(T(xa_i)) (order renyi_order; 1: Shannon):
    w_i = max(entropy_scale (H_i - min H), 0),   w^ = (w - min w) / (max w - min w + 1e-8)   (min, max: the batch)
    loss = mean_i [ w_i (KL_i(T(xa) || S(xa)) + igdm_alpha (e / E) KL_i(p(T(xa) - T(x - d)) || p(S(xa) - S(x - d))))
                    + clean_weight (1 - w^_i) KL_i(T(x) || S(x)) ]
The teacher is under no_grad in the loss (w is a constant); the IGDM probe x - d is not clamped, as the official
code. Defaults are the official code's where it differs from the paper text: the hard-coded entropy scale 5 (its
--entropy_scale is never read), clean_weight 0 (its main.sh's --beta 0) and weight decay 2e-4 (a transcription of
the paper says 5e-4); docs/methods.md lists them.
"""

from __future__ import annotations

from dataclasses import field

import torch
import torch.nn.functional as F
from torch import nn

from rdist.attacks.pgd import pgd
from rdist.errors import RdistError
from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_per_sample
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


def renyi_entropy(logits: torch.Tensor, order: float) -> torch.Tensor:
    """H_order(p(logits)) per example, in fp32, with the official code's 1e-12 inside the log (utils.py)."""
    p = F.softmax(logits.float(), dim=1)
    if abs(order - 1.0) < 1e-6:  # Shannon, the limit at order 1
        return -(p * torch.log(p + 1e-12)).sum(1)
    return torch.log(p.pow(order).sum(1) + 1e-12) / (1.0 - order)


@register_method
class SAAD(Method):
    name = "saad"
    bn_mode = "eval"
    teachers = (ROBUST,)
    # The official code: 200 epochs, lr x0.1 after epochs 100 and 150, SGD weight decay 2e-4 (hard-coded), weights
    # averaged from epoch 95 with BN statistics recomputed at every epoch's end; the final model is the average.
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4, swa_start=95)
    about = About("Lee and Chung, TMLR 2026",
                  "PGD-10 on KL(T~(x) || S(xa)), T's true-class logit linearised around x, x + 0.001 N(0, 1) start",
                  "entropy-weighted [KL(T(xa) || S(xa)) + (e/E) KL(T(xa) - T(x-d) || S(xa) - S(x-d))], SWA",
                  url="https://arxiv.org/abs/2512.10275", code="https://github.com/HongsinLee/saad")
    # main.sh's teacher (it names Bartoldson2024Adversarial_WRN-94-16 as the other CIFAR-10 choice); the CIFAR-100
    # teacher of the paper could not be checked.
    paper_teachers = {ROBUST: {"cifar10": "Gowal2021Improving_28_10_ddpm_100m"}}

    lambda_inner: float = 1.0  # weight of the linearised change of the teacher's true-class logit in the attack
    entropy_scale: float = 5.0  # scale of the entropy weights (the official code's hard-coded 5)
    renyi_order: float = 1.0  # order of the teacher's Renyi entropy that weights each example (1: Shannon)
    clean_weight: float = 0.0  # weight of the clean term (1 - w^) KL(T(x) || S(x)) (the official run script's 0)
    igdm_alpha: float = 1.0  # weight of the IGDM term, ramped up by epoch / E
    _clean: tuple[Step, torch.Tensor, torch.Tensor] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.entropy_scale < 0:
            raise RdistError(f"method saad: entropy_scale must be 0 or more, got {self.entropy_scale:g}")

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        # saad.py: "igdm_alpha = 1 for cifar10, 10 for cifar100, tinyimagenet"
        return cls.recipe, {"igdm_alpha": 10.0 if dataset in ("cifar100", "tiny-imagenet") else 1.0}

    def teacher_at_x(self, step: Step) -> tuple[torch.Tensor, torch.Tensor]:
        """T(x) (fp32) and g = d/dx sum_i T_{y_i}(x_i), from one teacher forward and backward per batch, shared by
        the attack and the loss (the official code runs a second forward at x)."""
        if self._clean is None or self._clean[0] is not step:
            with torch.enable_grad():
                x = step.x.detach().requires_grad_(True)
                logits = step.teachers[ROBUST](x)
                (slope,) = torch.autograd.grad(logits.gather(1, step.y[:, None]).sum(), x)
            self._clean = (step, logits.detach().float(), slope.float())
        return self._clean[1], self._clean[2]

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        teacher_clean, slope = self.teacher_at_x(step)
        # scatter, not F.one_hot: one_hot reads the labels' range back to the host (two syncs a step on CUDA).
        true_class = torch.zeros_like(teacher_clean).scatter_(1, step.y[:, None], 1.0)

        def objective(xa: torch.Tensor) -> torch.Tensor:
            # The gradient reaches xa through the student and through the linearised teacher logit. fp32: a bf16
            # logit would round the small change away.
            change = (slope * (xa - step.x)).flatten(1).sum(1)
            target = teacher_clean + self.lambda_inner * change[:, None] * true_class
            return kl_per_sample(target, student(xa)).sum()

        return pgd(objective, step.x, eps=self.eps, step_size=self.step_size, steps=self.attack_steps,
                   start="normal", generator=step.generator, clamp_start=False)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        behind = step.x - (xa - step.x)
        teacher = step.teachers[ROBUST]
        with torch.no_grad():
            teacher_adv, teacher_behind = teacher(xa).float(), teacher(behind).float()
        # The official loop's train-mode forwards, in its order: S(xa), S(x - d), S(x). S(x) runs even when its term
        # has weight 0 (then without a graph): it feeds BN's running statistics as in the official run.
        student_adv, student_behind = student(xa), student(behind)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.clean_weight != 0):
            student_clean = student(step.x)
        entropy = renyi_entropy(teacher_adv, self.renyi_order)
        lowest, highest = self._batch_min_max(step, entropy)
        weight = (self.entropy_scale * (entropy - lowest)).clamp(min=0)
        slopes = kl_per_sample(teacher_adv - teacher_behind, student_adv.float() - student_behind.float())
        per_example = weight * (kl_per_sample(teacher_adv, student_adv) + self.igdm_alpha * step.epoch / step.epochs
                                * slopes)
        if self.clean_weight != 0:
            # w is monotone in H with min w = 0, so min w and max w are exactly 0 and scale (max H - min H).
            normalised = weight / (self.entropy_scale * (highest - lowest) + 1e-8)
            teacher_clean, _ = self.teacher_at_x(step)
            per_example = per_example + self.clean_weight * (1 - normalised) * kl_per_sample(teacher_clean,
                                                                                              student_clean)
        return per_example.mean()

    def _batch_min_max(self, step: Step, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The smallest and the largest of `values` (one per example) over the global batch: SAAD's only
        batch-global statistic, one gather under torchrun (`step.batch`)."""
        everyone = step.batch.gather(values)
        return everyone.min(), everyone.max()
