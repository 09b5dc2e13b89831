"""TRADES (Zhang et al., ICML 2019).

Paper: https://arxiv.org/abs/1901.08573
Official code: https://github.com/yaodongyu/TRADES

    xa   = argmax KL(p(S(x)) || p(S(xa)))     S(x) fixed during the attack; start x + 0.001 N(0, 1); BN eval
    loss = CE(S(x), y) + beta * KLbm(S(x) || S(xa))

The clean prediction S(x) is NOT detached in the outer KL (as in the official code): the robustness term
also pulls the clean output towards the adversarial one. The student runs in train mode on x, xa and x again (the
KL target's own forward), as the official loss does: BN's running statistics see the clean batch twice.
`--recipe paper` attacks as the official scripts do, with eps 0.031 and step 0.007 (10 steps), rather than 8/255
and 2/255. `--norm L2` attacks in the L2 ball as the official `trades_loss(distance='l_2')` does (normalised
gradient steps, clamped to [0, 1] then renormed into the ball); docs/methods.md names its two differences.
"""

from __future__ import annotations

import torch
from torch import nn

from rdist.attacks.pgd import pgd
from rdist.methods.base import Method, Recipe, Step
from rdist.methods.losses import kl_batchmean, kl_per_sample
from rdist.methods.registry import register_method


@register_method
class TRADES(Method):
    name = "trades"
    kind = "teacher"
    bn_mode = "eval"
    # The official code early-stops at epoch 76; the schedule is kept as written.
    recipe = Recipe(epochs=100, milestones=(75, 90), weight_decay=2e-4, eps=0.031, step_size=0.007)
    norms = ("Linf", "L2")  # trades.py's distance='l_inf' and 'l_2'

    beta: float = 6.0  # weight of the robustness (KL) term

    def perturb(self, student: nn.Module, step: Step) -> torch.Tensor:
        with torch.no_grad():
            clean = student(step.x)
        return pgd(lambda xa: kl_per_sample(clean, student(xa)).sum(), step.x, eps=self.eps,
                   step_size=self.step_size, steps=self.attack_steps, start="normal", generator=step.generator,
                   clamp_start=False, norm=self.norm)

    def loss(self, student: nn.Module, step: Step, xa: torch.Tensor | None) -> torch.Tensor:
        # The official trades_loss's three train-mode forwards, in its order: S(x) for the CE, S(xa), then S(x) again
        # for the KL target. Train-mode BN gives the second S(x) the first's values, but its running statistics
        # count the clean batch twice, as in the official run.
        clean, adversarial = student(step.x), student(xa)
        return step.cross_entropy(clean) + self.beta * kl_batchmean(student(step.x), adversarial)
