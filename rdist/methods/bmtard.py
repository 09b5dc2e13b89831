"""B-MTARD (Zhao, Wang and Wei, TPAMI 2024) and MTARD (Zhao et al., ECCV 2022): a robust and a natural teacher, whose
loss weights (and, in B-MTARD, whose temperatures) adapt every step.

Papers: https://arxiv.org/abs/2306.16170 (B-MTARD), the ECCV 2022 paper (MTARD).
Official code: https://github.com/zhaoshiji123/MTARD-extension (resnet18_mtard_cifar10.py, read at 93506d6) and
https://github.com/zhaoshiji123/MTARD (mtard/mtard_loss.py, mtard_resnet18_cifar10.py, read at 6480a1b); no licence.

Inner attack (`mtard_inner_loss_ce`): PGD on CE(S(xa), y) from x + 0.001 N(0, 1), student BN in eval mode.
Outer loss, with Trob(xa), Tnat(x) under no_grad, the teachers softened by temperatures tau, the student at 1:
    L_adv = KL(Trob(xa)/tau_adv || S(xa)),  L_nat = KL(Tnat(x)/tau_nat || S(x))          (global batch means)
    loss  = kl_scale (w_adv L_adv + w_nat L_nat)
State, every step, from the global batch's L and the tempered teachers' H^ = mean p log p (no host sync):
    L0 = the first step's L;  r_k = (L_k / L0_k) ** ratio_power
    w_k <- w_k - weight_lr s (w_k - r_k / sum r);  clipped at 0, renormalised     (this step's loss uses the new w)
    tau_adv <- tau_adv - temp_lr s sign(H^_adv / H^_nat - 1), tau_nat likewise; clamped to [temp_min, temp_max]
kl_scale 0.1 is the official element mean (KLbm / C) over 10 classes, and MTARD's CIFAR-100 10x over 100.
s is the student's lr over its initial one (x0.1 at each milestone, as the official rates). MTARD is the same with
fixed temperatures 1 (temp_lr 0): its w_adv = 1 - w_nat is this update, the targets summing to 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rdist.errors import RdistError
from rdist.methods.base import About, Method, Recipe, Step
from rdist.methods.registry import register_method
from rdist.methods.roles import NATURAL, ROBUST

CODE_LOG_EPS = 1e-5  # the official kl_loss and entropy_value: log(p + 1e-5)
NATURAL_NOTE = ("the official natural teacher is a {arch} that RobustBench does not hold; the default is its "
                "naturally trained WRN-28-10 `Standard` (or train one: rdist teacher train --method natural)")


@register_method
class BMTARD(Method):
    name = "bmtard"
    aliases = ("b-mtard",)
    bn_mode = "eval"
    teachers = (ROBUST, NATURAL)
    recipe = Recipe(epochs=300, milestones=(215, 260, 285), weight_decay=2e-4)  # lr x0.1 after 215, 260, 285
    about = About("Zhao, Wang and Wei, TPAMI 2024", "PGD-10 on CE(S(xa), y), x + 0.001 N(0, 1) start",
                  "w_adv KL(Trob(xa)/tau_adv || S(xa)) + w_nat KL(Tnat(x)/tau_nat || S(x)), w and tau adapted per step",
                  url="https://arxiv.org/abs/2306.16170", code="https://github.com/zhaoshiji123/MTARD-extension",
                  note=NATURAL_NOTE.format(arch="ResNet-56"))
    # The RSLAD teachers (the README): TRADES WRN-34-10 and Gowal's WRN-70-16; RobustBench's natural WRN-28-10.
    paper_teachers = {ROBUST: {"cifar10": "Zhang2019Theoretically", "cifar100": "Gowal2020Uncovering_extra"},
                      NATURAL: {"cifar10": "Standard"}}

    kl_scale: float = 0.1  # scale of the KL terms (KLbm units)
    weight_lr: float = 0.025  # how fast the teachers' loss weights follow their relative losses (x0.1 at milestones)
    temp_lr: float = 0.001  # step of the teachers' temperatures per step (x0.1 at milestones); 0: fixed at 1
    temp_min: float = 1.0  # lowest teacher temperature
    temp_max: float = 10.0  # highest teacher temperature
    ratio_power: float = 1.0  # exponent of each teacher's loss relative to the first step's (MTARD's bert)
    bmtard_code_log_eps: bool = False  # the official log(p + 1e-5) in the KL and entropy values that steer the state

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.weight_lr <= 1 or self.temp_lr < 0:
            raise RdistError(f"method {self.name}: weight_lr must be in [0, 1] and temp_lr 0 or more, got "
                             f"{self.weight_lr:g} and {self.temp_lr:g}")
        if not 0 < self.temp_min <= 1 <= self.temp_max:
            raise RdistError(f"method {self.name}: temperatures start at 1, so temp_min must be in (0, 1] and "
                             f"temp_max 1 or more, got {self.temp_min:g} and {self.temp_max:g}")

    def initial_state(self, classes: int) -> dict[str, torch.Tensor]:
        # Index 0 the robust teacher's (adversarial) term, 1 the natural teacher's (clean) term.
        return {"weights": torch.full((2,), 0.5), "temperatures": torch.ones(2), "first_losses": torch.zeros(2),
                "started": torch.tensor(False)}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        return self.ce_pgd(student, step, start="normal")

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        student_adv, student_clean = student(xa), student(step.x)  # the official loop's train-mode order
        with torch.no_grad():
            teacher_adv, teacher_clean = step.teachers[ROBUST](xa).float(), step.teachers[NATURAL](step.x).float()
        tau = self.state["temperatures"]
        log_p_adv, log_p_nat = F.log_softmax(teacher_adv / tau[0], 1), F.log_softmax(teacher_clean / tau[1], 1)
        kl_adv, kl_nat = self._kl(log_p_adv, student_adv), self._kl(log_p_nat, student_clean)
        with torch.no_grad():  # one all-reduce under torchrun: every rank computes the one-process state
            means = step.batch.mean(torch.stack([kl_adv, kl_nat, self._p_log_p(log_p_adv), self._p_log_p(log_p_nat)],
                                                1))
            self._update(means[:2], means[2:], step.lr_scale)
        w = self.state["weights"]
        return self.kl_scale * (w[0] * kl_adv.mean() + w[1] * kl_nat.mean())

    def _update(self, losses: torch.Tensor, p_log_p: torch.Tensor, lr_scale: float) -> None:
        """The official per-step update on device tensors; replaced, not written into (the graph may hold them)."""
        state = self.state
        first = torch.where(state["started"], state["first_losses"], losses)
        relative = (losses / first) ** self.ratio_power
        w = state["weights"] - self.weight_lr * lr_scale * (state["weights"] - relative / relative.sum())
        w = w.clamp(min=0)
        # sign(H^_adv / H^_nat - 1), sign(H^_nat / H^_adv - 1): the softer teacher is cooled, the sharper warmed; a 0/0
        # (both teachers one-hot) leaves them (the official code's NaN would end at temp_max).
        move = torch.nan_to_num(torch.sign(p_log_p / p_log_p.flip(0) - 1), nan=0.0)
        tau = (state["temperatures"] - self.temp_lr * lr_scale * move).clamp(self.temp_min, self.temp_max)
        state.update(weights=w / w.sum(), temperatures=tau, first_losses=first,
                     started=torch.ones_like(state["started"]))

    def _kl(self, log_p: torch.Tensor, student_logits: torch.Tensor) -> torch.Tensor:
        """KL(p || p(S)) per example, summed over classes; the official log(p + 1e-5) for p under the switch (it
        changes the value that steers the state, not the gradient)."""
        log_target = (log_p.exp() + CODE_LOG_EPS).log() if self.bmtard_code_log_eps else log_p
        return (log_p.exp() * (log_target - F.log_softmax(student_logits.float(), 1))).sum(1)

    def _p_log_p(self, log_p: torch.Tensor) -> torch.Tensor:
        """sum_c p log p per example (minus the entropy; the official mean over classes, whose 1/C the ratio drops)."""
        p = log_p.exp()
        return (p * ((p + CODE_LOG_EPS).log() if self.bmtard_code_log_eps else log_p)).sum(1)


@register_method
class MTARD(BMTARD):
    name = "mtard"
    aliases = ()
    about = About("Zhao et al., ECCV 2022", "PGD-10 on CE(S(xa), y), x + 0.001 N(0, 1) start",
                  "w_adv KL(Trob(xa) || S(xa)) + w_nat KL(Tnat(x) || S(x)), w adapted per step",
                  url="https://www.ecva.net/papers/eccv_2022/papers_ECCV/papers/136640577.pdf",
                  code="https://github.com/zhaoshiji123/MTARD", note=NATURAL_NOTE.format(arch="WRN-34-10"))

    temp_lr: float = 0.0  # MTARD keeps both teachers at temperature 1
