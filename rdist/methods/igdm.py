"""IGDM, indirect gradient matching (Lee et al., ICLR 2025): a term added to ARD, RSLAD or AdaAD.

Paper: https://arxiv.org/abs/2312.03286
Official code: not published where rdist could read it; a copy of it was read instead,
https://github.com/Xavaitron/VLM_Distillation (ICLR_IGDM/, see docs/methods.md).

Formula. With d = xa - x, the student matches how the teacher's logits change across the perturbation:
    base loss + igdm_alpha * (epoch / E) * KLbm( p(T(x + b d) - T(x - g d)) || p(S(x + b d) - S(x - g d)) )
a KL between softmaxes of LOGIT DIFFERENCES, teacher under no_grad, b = igdm_beta, g = igdm_gamma, E the run's
epochs. x - g d is a probe of the slope, not an adversarial example: like the official code it is not clamped to
[0, 1].

Differences from the official code: the ramp runs over the run's own epochs (not a hard-coded 200 or 300), gamma
is honoured on ARD too (its ARD script uses beta for both probes), and the IGDM code's ARD attacks with steps of
2/255 (its 2/225 is a typo). docs/methods.md lists the order of the forwards.

`--recipe paper` reproduces the IGDM code's own settings for each base (its <base>_IGDM_cifar100.py scripts), over
the base's paper hyper-parameters for the dataset and architecture (e.g. AdaAD's kl_scale 1 on CIFAR-100):
- ard+igdm: 200 epochs (x0.1 at 100, 150) with the IGDM code's ARD, which is not Goldblum's: its PGD runs with BN
  in eval mode from a clamped uniform start, and its base term is KLbm(T(x) || S(x + b d)) at tau 1 (ARD at
  alpha 1, tau 1, kl_scale 1, distilled on the forward probe: `igdm_code_ard`). Without it, ard+igdm composes
  IGDM with rdist's ARD (tau 30, kl_scale 1/C, train-mode attack).
- rslad+igdm: 300 epochs, x0.1 at 0.7, 0.86 and 0.95 of them.
- adaad+igdm: 200 epochs (x0.1 at 100, 150), weight decay 2e-4 (not AdaAD's 5e-4).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from rdist.errors import RdistError
from rdist.methods.ard import ARD
from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean
from rdist.methods.registry import register_term
from rdist.methods.roles import ROBUST
from rdist.methods.term import Term

# `--recipe paper` per base: the IGDM code's recipe (lr 0.1, batch 128, its argparse weight decay 2e-4) and the
# settings its script gives the base.
CODE_PRESETS: dict[str, tuple[Recipe, dict[str, Any]]] = {
    "ard": (Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4),
            {"alpha": 1.0, "tau": 1.0, "kl_scale": 1.0, "igdm_code_ard": True}),
    "rslad": (Recipe(epochs=300, milestones=(210, 258, 285), weight_decay=2e-4), {}),  # int(0.7, 0.86, 0.95 * 300)
    "adaad": (Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4), {}),
}


@register_term
class IGDM(Term):
    term = "igdm"
    bases = ("ard", "rslad", "adaad")
    default_base = "adaad"  # the IGDM authors recommend IGDM on AdaAD (their `adaad_IGDM` script)
    term_recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    about = About("Lee et al., ICLR 2025", "the base method's", "20 (epoch / E) KL(T(x+d) - T(x-d) || S(x+d) - S(x-d))",
                  url="https://arxiv.org/abs/2312.03286")
    # The official code's teacher ("BDM", Wang2023Better_WRN-28-10) for every base; it ships CIFAR-100 scripts
    # only, so on CIFAR-10 rdist takes the same authors' CIFAR-10 model, the closest RobustBench choice.
    paper_teachers = {ROBUST: {"cifar10": "Wang2023Better_WRN-28-10", "cifar100": "Wang2023Better_WRN-28-10"}}

    igdm_alpha: float = 20.0  # weight of the IGDM term, ramped up by epoch / E
    igdm_beta: float = 1.0  # IGDM forward probe x + b d
    igdm_gamma: float = 1.0  # IGDM backward probe x - g d
    igdm_code_ard: bool = False  # the IGDM code's own ARD as the base (ard+igdm's paper recipe)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.igdm_code_ard and not isinstance(self.base, ARD):
            raise RdistError(f"igdm_code_ard (the IGDM code's own ARD) applies to ard+igdm, not {self.name}")

    @property
    def bn_mode(self) -> str:
        return "eval" if self.igdm_code_ard else self.base.bn_mode

    @classmethod
    def paper_preset_over(cls, base: type[Method], dataset: str, arch: str) -> tuple[Recipe, dict[str, Any]]:
        _, base_values = base.paper_preset(dataset, arch)
        recipe, code_settings = CODE_PRESETS[base.name]
        return recipe, {**base_values, **code_settings}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor | None:
        if self.igdm_code_ard:  # ard_IGDM_cifar100.py's PGD: BN eval (bn_mode), its uniform start clamped to [0, 1]
            return self.base.ce_pgd(student, step, start="uniform", clamp_start=True)
        return self.base.perturb(student, step)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        d = xa - step.x
        ahead, behind = step.x + self.igdm_beta * d, step.x - self.igdm_gamma * d
        # Differences of nearby logits: taken in fp32, since a bf16 (autocast) result would round them.
        teacher = step.teachers[ROBUST]
        with torch.no_grad():
            teacher_slope = teacher(ahead).float() - teacher(behind).float()
        if self.igdm_code_ard:
            # The IGDM code's forwards, in its order: S(x + b d) serves the base term and the slope; S(x) is its
            # weight-0 CE at alpha 1.
            student_ahead = student(ahead)
            base_loss = self.base.distil(step, student_ahead, student(step.x))
            student_slope = student_ahead.float() - student(behind).float()
        else:
            student_slope = student(ahead).float() - student(behind).float()
            base_loss = self.base.loss(student, step, xa)
        ramp = step.epoch / step.epochs
        return base_loss + self.igdm_alpha * ramp * kl_batchmean(teacher_slope, student_slope)
