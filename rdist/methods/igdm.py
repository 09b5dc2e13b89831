"""IGDM (Lee et al., ICLR 2024): indirect gradient matching, a term added to ARD, RSLAD or AdaAD.

With d = xa - x, the student matches how the teacher's logits change across the perturbation:
    base loss + igdm_alpha * (epoch / E) * KLbm( p(T(x + b d) - T(x - g d)) || p(S(x + b d) - S(x - g d)) )
a KL between softmaxes of LOGIT DIFFERENCES, teacher under no_grad, b = igdm_beta, g = igdm_gamma, E the run's
epochs. Unlike the official code, the ramp runs over the run's own epochs (not a hard-coded 200 or 300) and
gamma is honoured on ARD too. x - g d is a probe of the slope, not an adversarial example: like the official
code it is not clamped to [0, 1].

`--recipe paper` reproduces the IGDM code's own settings for each base (its <base>_IGDM_cifar100.py scripts; see
docs/methods.md), over the base's paper hyper-parameters for the dataset and architecture (e.g. AdaAD's kl_scale 1
on CIFAR-100): ard+igdm 200 epochs (x0.1 at 100, 150) with the IGDM code's ARD, which is not Goldblum's: its PGD
runs with BN in eval mode from a clamped uniform start, and its base term is KLbm(T(x) || S(x + b d)) at tau 1
(ARD at alpha 1, tau 1, kl_scale 1, distilled on the forward probe: `igdm_code_ard`); rslad+igdm 300 epochs,
x0.1 at 0.7, 0.86 and 0.95 of them; adaad+igdm 200 epochs (x0.1 at 100, 150), weight decay 2e-4 (not AdaAD's
5e-4). Without it, ard+igdm composes IGDM with rdist's ARD (tau 30, kl_scale 1/C, train-mode attack).
"""

from __future__ import annotations

from dataclasses import field
from typing import Any

import torch
from torch import nn

from rdist.errors import RdistError
from rdist.methods.ard import ARD
from rdist.methods.base import ROBUST, About, Step, Method, Recipe
from rdist.methods.losses import kl_batchmean

# `--recipe paper` per base: the IGDM code's recipe (lr 0.1, batch 128, its argparse weight decay 2e-4) and the
# settings its script gives the base.
CODE_PRESETS: dict[str, tuple[Recipe, dict[str, Any]]] = {
    "ard": (Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4),
            {"alpha": 1.0, "tau": 1.0, "kl_scale": 1.0, "igdm_code_ard": True}),
    "rslad": (Recipe(epochs=300, milestones=(210, 258, 285), weight_decay=2e-4), {}),  # int(0.7, 0.86, 0.95 * 300)
    "adaad": (Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4), {}),
}


class IGDM(Method):
    """`base` with the IGDM term added: a method built around another one (`create_method("rslad+igdm")`)."""

    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    about = About("Lee et al., ICLR 2024", "the base method's", "base + 20 (epoch / E) KL of the logit "
                  "differences T(x + d) - T(x - d) vs S(x + d) - S(x - d)")
    # The official code's teacher ("BDM", Wang2023Better_WRN-28-10) for every base; it ships CIFAR-100 scripts
    # only, so on CIFAR-10 rdist takes the same authors' CIFAR-10 model, the closest RobustBench choice.
    paper_teachers = {ROBUST: {"cifar10": "Wang2023Better_WRN-28-10", "cifar100": "Wang2023Better_WRN-28-10"}}

    base: Method = field(kw_only=False)  # IGDM(RSLAD(), igdm_alpha=...); its attack settings are the composition's
    igdm_alpha: float = 20.0  # weight of the term, ramped up by epoch / E
    igdm_beta: float = 1.0  # forward probe x + b d
    igdm_gamma: float = 1.0  # backward probe x - g d
    igdm_code_ard: bool = False  # the IGDM code's own ARD as the base (ard+igdm's paper recipe)

    def __post_init__(self) -> None:
        base = self.base
        if not base.supports_igdm:
            raise RdistError(f"+igdm works on ard, rslad, adaad; not on {base.name} "
                             f"(use --method ard+igdm, rslad+igdm or adaad+igdm)")
        if self.igdm_code_ard and not isinstance(base, ARD):
            raise RdistError(f"igdm_code_ard (the IGDM code's own ARD) applies to ard+igdm, not {base.name}+igdm")
        self.name = f"{base.name}+igdm"
        self.kind, self.bn_mode = base.kind, "eval" if self.igdm_code_ard else base.bn_mode
        self.teachers = base.teachers
        self.supports_igdm = False  # the term is added once
        self.eps, self.step_size, self.steps = base.eps, base.step_size, base.steps
        super().__post_init__()

    @classmethod
    def paper_preset_over(cls, base: type[Method], dataset: str, arch: str) -> tuple[Recipe, dict[str, Any]]:
        """`paper_preset` of `base`+igdm: the IGDM code's recipe and settings for `base` over the base's paper
        hyper-parameters for `dataset` and `arch`."""
        _, base_hparams = base.paper_preset(dataset, arch)
        recipe, code_settings = CODE_PRESETS[base.name]
        return recipe, {**base_hparams, **code_settings}

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

    def config(self) -> dict[str, Any]:
        # igdm_code_ard only when set, so the identity of a composition run stays what earlier versions stored.
        hparams = {k: v for k, v in self.hparams.items() if k != "igdm_code_ard" or v}
        return {**self.base.config(), "method": self.name, **hparams}
