"""CW-inf: PGD on the Carlini-Wagner margin loss (30 steps of 2/255, kappa 50, uniform start)."""

from __future__ import annotations

import torch

from rdist.attacks.pgd import PGD


def margin_loss(logits: torch.Tensor, y: torch.Tensor, kappa: float = 50.0) -> torch.Tensor:
    """Per-example `-clamp(z_y - max_{c != y} z_c + kappa, min=0)`; maximising it pushes z_y below the runner-up."""
    true_logit = logits.gather(1, y[:, None]).squeeze(1)
    others = logits.masked_fill(torch.nn.functional.one_hot(y, logits.shape[1]).bool(), float("-inf"))
    return -(true_logit - others.amax(1) + kappa).clamp(min=0)


class CW(PGD):
    """CW-inf: PGD on the margin loss of "Towards Evaluating the Robustness of Neural Networks" (Carlini and Wagner,
    IEEE S&P 2017) [https://arxiv.org/abs/1608.04644], within an L-inf ball, as the evaluation codes of the
    robust-training and distillation papers run it (`margin_loss`, kappa 50); in L2 the same loss with normalised
    gradient steps in the L2 ball. It is not Carlini and Wagner's L2 optimisation attack.

    Official code: https://github.com/carlini/nn_robust_attacks (the paper's L0, L2 and L-inf attacks, whose loss
    this is; the PGD form has no official code of its own)

    Distance: L-inf or L2 (`norm`).

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels.
        eps (float): the L-inf budget in [0, 1] pixel units, e.g. 8/255.
        steps (int): gradient steps. (default: 30)
        step_size (float): the size of each signed step. (default: 2/255)
        kappa (float): the confidence margin: the loss stops rewarding a runner-up logit kappa above the true one.
            (default: 50)
        generator (torch.Generator): the uniform random start's source.
        norm (str): "Linf" or "L2". (default: "Linf")

    The protocol: `cw` is CW(eps=8/255, steps=30, step_size=2/255, kappa=50), uniform random start; in L2 steps
    of eps/4.

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked.

    Example:
        >>> x_adv = CW(model.eval(), eps=8 / 255)(x, y)
    """

    def __init__(self, model, eps: float, *, steps: int = 30, step_size: float = 2 / 255, kappa: float = 50.0,
                 generator: torch.Generator | None = None, norm: str = "Linf"):
        super().__init__(model, eps, steps=steps, step_size=step_size, start="uniform", generator=generator,
                         norm=norm)
        self.kappa = kappa

    def losses(self, xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margin_loss(self.model(xa), y, self.kappa)
