"""PeerAiD, adversarial distillation from a specialised peer tutor (Jung, Jang, Song and Lee, CVPR 2024).

Paper: https://arxiv.org/abs/2403.06668
Official code: https://github.com/jaewonalive/PeerAiD (main.py `train_kd`, attack_function.py `LinfPeerAttack`),
read at cd12e92. It is GPL-3.0: this is written from the formulas.

No pretrained teacher: a peer P (the student's architecture unless --companion peer=...) is trained jointly, by its
own SGD, on the student's adversarial examples, and the student distils from it.
Inner attack, student and peer in eval mode, P(x) under no_grad, from x + 0.001 N(0, 1):
    maximise sum_i KL(p(P(x_i)) || p(S(xa_i)))
Outer loss, both networks in train mode, KL in KLbm units times kl_scale (None: 1/C, the official element mean):
    L_P = ce_peer CE(P(xa), y) + kl_peer tau_peer^2 kl_scale KLbm(S(xa)/tau_peer || P(xa)/tau_peer)
    L_S = ce_student CE(S(xa), y) + kl_student tau^2 kl_scale KLbm(P(xa)/tau || S(xa)/tau)
          + self_kl tau^2 kl_scale KLbm(S(x)/tau || S(xa)/tau)
    loss = L_P + L_S   (one backward; the engine steps both optimisers)
P(xa) is detached in L_S; S(x) is a live target. The peer's target S(xa) is a train-mode forward of its own, before
the student's S(xa), and is not detached, as in the official code, so L_P trains the student too
(`peer_target_grad`; false detaches it). Defaults are the README's CIFAR-10 run (T 5, gamma2 0.1); `--recipe paper`
sets the CIFAR-100 and Tiny-ImageNet values.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.attacks.pgd import pgd
from rdist.methods.base import About, Companion, Method, Recipe, Step
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import register_method

PEER = "peer"


@register_method
class PeerAiD(Method):
    name = "peeraid"
    bn_mode = "eval"
    companions = {PEER: Companion()}  # the student's architecture, lr, schedule and weight decay, as configs/*.json
    # configs/PeerAiD_*_cifar10.json: 300 epochs, x0.1 once the 0-based epoch reaches 214, 259, 284; SWA of the
    # student from the first decay (--swa_s: `epoch >= 214`, 0-based).
    recipe = Recipe(epochs=300, milestones=(214, 259, 284), weight_decay=2e-4, swa_start=215)
    about = About("Jung et al., CVPR 2024", "PGD-10 on KL(P(x) || S(xa)), P a jointly trained peer, "
                  "x + 0.001 N(0, 1) start", "peer: CE(P(xa), y) + 0.1 KL(S(xa) || P(xa)); student: tau^2 "
                  "[KL(P(xa)/tau || S(xa)/tau) + KL(S(x)/tau || S(xa)/tau)], tau 5, SWA",
                  url="https://arxiv.org/abs/2403.06668", code="https://github.com/jaewonalive/PeerAiD")

    tau: float = 5.0  # distillation temperature
    tau_peer: float = 1.0  # temperature of the peer's KL term (the official --re_kd_temperature)
    ce_peer: float = 1.0  # weight of the peer's CE(P(xa), y) (the paper's gamma1)
    kl_peer: float = 0.1  # weight of the peer's KL(S(xa) || P(xa)) (the paper's gamma2)
    ce_student: float = 0.0  # weight of the student's CE(S(xa), y) (the paper's lambda1)
    kl_student: float = 1.0  # weight of the student's KL(P(xa) || S(xa)) (the paper's lambda2)
    self_kl: float = 1.0  # weight of the student's KL(S(x) || S(xa)) (the paper's lambda3)
    kl_scale: float | None = None  # scale of the KL terms (KLbm units); None: 1/C, the official element mean
    peer_target_grad: bool = True  # the peer's KL target S(xa) keeps its gradient to the student (the official code)

    @classmethod
    def paper_preset(cls, dataset: str, arch: str) -> tuple[Recipe, dict[str, float]]:
        # training_scripts/*.sh and configs/*.json: gamma2 1 on CIFAR-100; Tiny-ImageNet its own weights, T 1, and a
        # shorter schedule (ResNet-18: 200 epochs, x0.1 at 99 and 149; WRN-34-10: 100 epochs, at 49 and 79).
        if dataset == "cifar100":
            return cls.recipe, {"kl_peer": 1.0}
        if dataset == "tiny-imagenet":
            epochs, milestones = (100, (49, 79)) if arch == "wrn-34-10" else (200, (99, 149))
            recipe = Recipe(epochs, milestones, cls.recipe.weight_decay, swa_start=milestones[0] + 1)
            return recipe, {"tau": 1.0, "kl_peer": 100.0, "ce_student": 0.035, "kl_student": 35.0, "self_kl": 20.0}
        return cls.recipe, {}

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        with torch.no_grad():
            peer_clean = step.companions[PEER](step.x)
        return pgd(lambda xa: kl_per_sample(peer_clean, student(xa)).sum(), step.x, eps=self.eps,
                   step_size=self.step_size, steps=self.attack_steps, start="normal", generator=step.generator,
                   clamp_start=False)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor) -> torch.Tensor:
        # The official loop's train-mode forwards, in its order: P(xa), S(xa) (the peer's target), S(xa), S(x).
        peer_adv = step.companions[PEER](xa)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.peer_target_grad):
            peer_target = student(xa)
        student_adv, student_clean = student(xa), student(step.x)
        kl_scale = self.kl_scale if self.kl_scale is not None else 1.0 / student_adv.shape[1]
        peer_loss = (self.ce_peer * step.cross_entropy(peer_adv) + self.kl_peer * self.tau_peer ** 2
                     * kl_scale * kl_batchmean(peer_target, peer_adv, self.tau_peer))
        student_loss = (self.ce_student * step.cross_entropy(student_adv) + self.tau ** 2 * kl_scale
                        * (self.kl_student * kl_batchmean(peer_adv.detach(), student_adv, self.tau)
                           + self.self_kl * kl_batchmean(student_clean, student_adv, self.tau)))
        return peer_loss + student_loss
