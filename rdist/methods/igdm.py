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

from typing import Any

import torch
from torch import nn

from rdist.errors import RdistError
from rdist.methods.ard import ARD
from rdist.methods.base import About, Batch, Method, Recipe
from rdist.methods.losses import kl_bm

# `--recipe paper` per base: the IGDM code's recipe (lr 0.1, batch 128, its argparse weight decay 2e-4) and the
# settings its script gives the base.
CODE_PRESETS: dict[str, tuple[Recipe, dict[str, Any]]] = {
    "ard": (Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4),
            {"alpha": 1.0, "tau": 1.0, "kl_scale": 1.0, "igdm_code_ard": True}),
    "rslad": (Recipe(epochs=300, milestones=(210, 258, 285), weight_decay=2e-4), {}),  # int(0.7, 0.86, 0.95 * 300)
    "adaad": (Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4), {}),
}


class IGDM(Method):
    defaults = {"igdm_alpha": 20.0, "igdm_beta": 1.0, "igdm_gamma": 1.0}
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
    about = About("Lee et al., ICLR 2024", "the base method's", "base + 20 (epoch / E) KL of the logit "
                  "differences T(x + d) - T(x - d) vs S(x + d) - S(x - d)")
    # The official code's teacher ("BDM", Wang2023Better_WRN-28-10) for every base; it ships CIFAR-100 scripts
    # only, so on CIFAR-10 rdist takes the same authors' CIFAR-10 model, the closest RobustBench choice.
    teachers = {"cifar10": "Wang2023Better_WRN-28-10", "cifar100": "Wang2023Better_WRN-28-10"}

    def __init__(self, base: Method, igdm_alpha: float | None = None, igdm_beta: float | None = None,
                 igdm_gamma: float | None = None, igdm_code_ard: bool = False):
        if not base.supports_igdm:
            raise RdistError(f"+igdm works on ard, rslad, adaad; not on {base.name} "
                             f"(use --method ard+igdm, rslad+igdm or adaad+igdm)")
        if igdm_code_ard and not isinstance(base, ARD):
            raise RdistError(f"igdm_code_ard (the IGDM code's own ARD) applies to ard+igdm, not {base.name}+igdm")
        self.base, self.code_ard = base, bool(igdm_code_ard)
        self.name = f"{base.name}+igdm"
        self.kind, self.bn_mode = base.kind, "eval" if self.code_ard else base.bn_mode
        self.needs_teacher, self.needs_natural_teacher = base.needs_teacher, base.needs_natural_teacher
        self.supports_igdm = False  # the term is added once
        super().__init__(eps=base.eps, step_size=base.step_size, steps=base.steps, igdm_alpha=igdm_alpha,
                         igdm_beta=igdm_beta, igdm_gamma=igdm_gamma)

    @classmethod
    def paper_preset_over(cls, base: type[Method], dataset: str, arch: str) -> tuple[Recipe, dict[str, Any]]:
        """`paper_preset` of `base`+igdm: the IGDM code's recipe and settings for `base` over the base's paper
        hyper-parameters for `dataset` and `arch`."""
        _, base_hparams = base.paper_preset(dataset, arch)
        recipe, code_settings = CODE_PRESETS[base.name]
        return recipe, {**base_hparams, **code_settings}

    def perturb(self, student: nn.Module, batch: Batch) -> torch.Tensor | None:
        if self.code_ard:  # ard_IGDM_cifar100.py's PGD: BN eval (bn_mode), its uniform start clamped to [0, 1]
            return self.base.ce_pgd(student, batch, start="uniform", clamp_start=True)
        return self.base.perturb(student, batch)

    def loss(self, student: nn.Module, batch: Batch, xa: torch.Tensor) -> torch.Tensor:
        d = xa - batch.x
        ahead, behind = batch.x + self.igdm_beta * d, batch.x - self.igdm_gamma * d
        # Differences of nearby logits: taken in fp32, since a bf16 (autocast) result would round them.
        with torch.no_grad():
            teacher_slope = batch.teacher(ahead).float() - batch.teacher(behind).float()
        if self.code_ard:
            # The IGDM code's forwards, in its order: S(x + b d) serves the base term and the slope; S(x) is its
            # weight-0 CE at alpha 1.
            student_ahead = student(ahead)
            base_loss = self.base.distil(batch, student_ahead, student(batch.x))
            student_slope = student_ahead.float() - student(behind).float()
        else:
            student_slope = student(ahead).float() - student(behind).float()
            base_loss = self.base.loss(student, batch, xa)
        ramp = batch.epoch / batch.epochs
        return base_loss + self.igdm_alpha * ramp * kl_bm(teacher_slope, student_slope)

    def config(self) -> dict[str, Any]:
        # igdm_code_ard only when set, so the identity of a composition run stays what earlier versions stored.
        return {**self.base.config(), "method": self.name, **self.hparams,
                **({"igdm_code_ard": True} if self.code_ard else {})}
