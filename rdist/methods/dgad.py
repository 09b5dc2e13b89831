"""DGAD, dynamic guidance adversarial distillation (Park and Min, ECCV 2024): AdaAD with misclassification-aware
partitioning (MAP), error-corrective label swapping (ELS) and predictive consistency regularisation (PCR).

Paper: https://arxiv.org/abs/2409.01627
Official code: https://github.com/kunsaram01/DGAD (main.py `--method DGAD`, AT_helper.py), read at a0329c8.

Inner attack: AdaAD's (its `adaad_inner_loss`), on the whole batch. Outer loss, with T(x), T(xa) under no_grad:
    MAP  l_i = 1 where the teacher is wrong on x_i (argmax T(x_i) != y_i), else 0
    ELS  T^(x): where l_i = 1, the logits of y_i and of argmax T(x_i) swapped;
         T^(xa): where T_y(xa_i) < max_{k != y_i} T_k(xa_i), the logits of y_i and of that runner-up swapped
    loss = kl_scale * (1/B) sum_i [ l_i KL_i(T^(x) || S(x)) + (1 - l_i) KL_i(T^(xa) || S(xa)) ]
         + pcr_beta * mean_{B x C} (p(S(xa)) - p(S(x)))^2                          (gradient through both)
The official total is (n_ST/bs) L_clean + ((bs - n_ST)/bs) L_adv with L_clean, L_adv the means over the two
partitions and bs its --bs (128): on every full batch exactly the (1/B) sum above. rdist divides by the batch's
own size B, so that the last, shorter batch weighs its examples alike (`dgad_code_bs=128` restores the official
weights) and a batch without adversarial-partition examples is no division by zero (the official code's is).
Its MobileNetV2 branch misplaces a parenthesis, 0.5 ((n_ST/bs) L_clean + (bs - n_ST)/bs) L_adv + pcr: the
correct 0.5 (...) by default (`--recipe paper` on mobilenetv2: kl_scale 0.5), the official product with
`dgad_code_mnv2_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.errors import RdistError
from rdist.methods.adaad import AdaAD
from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.losses import kl_per_sample
from rdist.methods.registry import register_method
from rdist.methods.roles import ROBUST


def swap_logits(logits: torch.Tensor, first: torch.Tensor, second: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """`logits` with columns first[i] and second[i] exchanged in the rows where `where` holds (no host sync)."""
    a, b = logits.gather(1, first[:, None]), logits.gather(1, second[:, None])
    swapped = logits.scatter(1, first[:, None], b).scatter(1, second[:, None], a)
    return torch.where(where[:, None], swapped, logits)


@register_method
class DGAD(Method):
    name = "dgad"
    bn_mode = "eval"
    teachers = (ROBUST,)
    recipe = Recipe(epochs=200, milestones=(100, 150), weight_decay=5e-4)  # main.py's argparse defaults
    about = About("Park and Min, ECCV 2024", "AdaAD's: PGD-10 on KL(T(xa) || S(xa)) through the teacher",
                  "KL(T^(x) || S(x)) where T(x) is wrong, KL(T^(xa) || S(xa)) elsewhere, T^ label-swapped, "
                  "+ MSE(p(S(xa)), p(S(x)))", url="https://arxiv.org/abs/2409.01627",
                  code="https://github.com/kunsaram01/DGAD")
    # The official code loads AdaAD's teachers: LTD's WRN-34-20 (its RobustBench option on CIFAR-10; its default
    # is a WRN-34-10 "robust_teacher.pth" of unknown provenance) and LTD's WRN-34-10 on CIFAR-100.
    paper_teachers = AdaAD.paper_teachers

    pcr_beta: float = 1.0  # weight of the predictive-consistency term MSE(p(S(xa)), p(S(x)))
    kl_scale: float = 1.0  # scale of the KL terms (KLbm units)
    dgad_code_bs: int | None = None  # the official code's fixed batch size in the KL weights (128); None: B, the batch's
    dgad_code_mnv2_loss: bool = False  # the official MobileNetV2 loss, its clean KL multiplied by the adversarial one

    # AdaAD's attack: the official code calls AdaAD's adaad_inner_loss.
    perturb = AdaAD.perturb

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dgad_code_bs is not None and self.dgad_code_bs < 1:
            raise RdistError(f"method dgad: dgad_code_bs must be a batch size (1 or more), got {self.dgad_code_bs}")

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        # The official MobileNetV2 branch halves the KL part (with its parenthesis put right).
        return cls.recipe, {"kl_scale": 0.5 if arch == "mobilenetv2" else 1.0}

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        clean, adversarial = student(step.x), student(xa)  # the official loop's train-mode order
        teacher = step.teachers[ROBUST]
        with torch.no_grad():
            teacher_clean, teacher_adv = teacher(step.x).float(), teacher(xa).float()
        y = step.y
        wrong = teacher_clean.argmax(1) != y  # MAP: l_i = 1
        teacher_clean = swap_logits(teacher_clean, y, teacher_clean.argmax(1), wrong)
        best_other, runner_up = teacher_adv.scatter(1, y[:, None], float("-inf")).max(1)
        teacher_adv = swap_logits(teacher_adv, y, runner_up, teacher_adv.gather(1, y[:, None])[:, 0] < best_other)
        kl_clean, kl_adv = kl_per_sample(teacher_clean, clean), kl_per_sample(teacher_adv, adversarial)
        pcr = (F.softmax(adversarial.float(), 1) - F.softmax(clean.float(), 1)).pow(2).mean()
        if self.dgad_code_mnv2_loss:
            return self.kl_scale * self._code_mnv2_kl(step, wrong, kl_clean, kl_adv) + self.pcr_beta * pcr
        if self.dgad_code_bs is None:  # (1/B) sum_i: the official weights on a full batch
            per_example = torch.where(wrong, kl_clean, kl_adv)
        else:  # per example, times B: n_ST/bs * 1/n_ST and (bs - n_ST)/bs * 1/(B - n_ST)
            total, n_st = step.batch.size, self._global_count(step, wrong)
            adv_weight = total * (self.dgad_code_bs - n_st) / (self.dgad_code_bs * (total - n_st).clamp(min=1))
            per_example = torch.where(wrong, total / self.dgad_code_bs * kl_clean, adv_weight * kl_adv)
        return self.kl_scale * per_example.mean() + self.pcr_beta * pcr

    def _code_mnv2_kl(self, step: Step, wrong: torch.Tensor, kl_clean: torch.Tensor,
                      kl_adv: torch.Tensor) -> torch.Tensor:
        """((n_ST/bs) L_clean + (bs - n_ST)/bs) L_adv: the official MobileNetV2 branch without its 0.5 (kl_scale).
        A product of two batch means, which no mean over examples expresses: computed from sums over the global
        batch (`step.batch`), it is the same on every rank, which the engine's weighting of each rank's loss by its
        share of the batch leaves as it is."""
        total, n_st = step.batch.size, self._global_count(step, wrong)
        bs = total if self.dgad_code_bs is None else self.dgad_code_bs
        clean_part = step.batch.sum(torch.where(wrong, kl_clean, 0)) / bs  # n_ST/bs * L_clean
        adv_mean = step.batch.sum(torch.where(wrong, 0, kl_adv)) / (total - n_st).clamp(min=1)  # L_adv (0 if none)
        return (clean_part + (bs - n_st) / bs) * adv_mean

    def _global_count(self, step: Step, mask: torch.Tensor) -> torch.Tensor:
        """How many examples of the global batch `mask` marks (a device tensor, no sync): one all-reduce under
        torchrun (`step.batch`)."""
        return step.batch.sum(mask)
