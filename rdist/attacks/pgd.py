"""The one projected-gradient core. Every PGD-style attack, and every method's inner maximisation,
calls `pgd` with its own objective, start and step; BN mode is the caller's choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from rdist.attacks.base import Attack

Start = Literal["zero", "uniform", "normal"]


@dataclass(frozen=True)
class ShardNoise:
    """Random starts for rows [start, stop) of a global batch of `total` examples, in data-parallel training.

    Each process draws the whole global batch's noise from `generator` (seeded alike on every process) and
    keeps its own rows, so that every example starts where a single process would start it, whatever the
    number of processes.
    """

    generator: torch.Generator
    start: int
    stop: int
    total: int


Noise = torch.Generator | ShardNoise | None


def _draw(sample: Callable[..., torch.Tensor], x: torch.Tensor, generator: Noise) -> torch.Tensor:
    if isinstance(generator, ShardNoise):
        shape = (generator.total, *x.shape[1:])
        full = sample(shape, generator=generator.generator, device=x.device, dtype=x.dtype)
        return full[generator.start:generator.stop]
    return sample(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def random_start(x: torch.Tensor, eps: float, start: Start, generator: Noise, *,
                 clamp: bool = True) -> torch.Tensor:
    """The first iterate: x itself, U(-eps, eps) around it (Madry), or x + 0.001 N(0, 1) (TRADES).

    `clamp` projects it into [0, 1] (and the eps-ball), as evaluation attacks do (torchattacks, AutoAttack's
    PGD). The training methods' official codes all start at the raw x + noise instead, so a pixel at 0 or 1
    first gets a gradient outside the box: `clamp=False` reproduces that (the first step clamps it back)."""
    if start == "zero":
        return x.clone()
    if start == "uniform":
        noise = (_draw(torch.rand, x, generator) * 2 - 1) * eps
    elif start == "normal":
        noise = 0.001 * _draw(torch.randn, x, generator)
    else:
        raise ValueError(f"unknown PGD start {start!r}")
    return project(x + noise, x, eps) if clamp else x + noise


def project(xa: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.min(torch.max(xa, x - eps), x + eps).clamp_(0, 1)


def pgd(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, eps: float, step_size: float,
        steps: int, start: Start = "uniform", generator: Noise = None,
        clamp_start: bool = True) -> torch.Tensor:
    """Maximise `objective(xa)` (a scalar, summed over the batch so each example gets its own gradient)
    with signed-gradient steps, projected to the L-inf eps-ball around x and to [0, 1]. `clamp_start=False`
    is the training methods' unclamped start (`random_start`); every step is projected either way."""
    x = x.detach()
    xa = random_start(x, eps, start, generator, clamp=clamp_start)
    for _ in range(steps):
        xa.requires_grad_(True)
        # autograd.grad, not backward: the model's parameter gradients stay untouched.
        (grad,) = torch.autograd.grad(objective(xa), xa)
        xa = project(xa.detach() + step_size * grad.sign(), x, eps)
    return xa.detach()


class PGD(Attack):
    """PGD, projected gradient descent, from "Towards Deep Learning Models Resistant to Adversarial Attacks"
    (Madry et al., ICLR 2018) [https://arxiv.org/abs/1706.06083]: signed-gradient ascent on the cross-entropy,
    projected after every step to the eps-ball around the input and to [0, 1].

    Distance: L-inf.

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels (it normalises inside).
        eps (float): the L-inf budget in [0, 1] pixel units, e.g. 8/255.
        steps (int): gradient steps. (default: 20)
        step_size (float): the size of each signed step. (default: 2/255)
        start (str): "uniform" in the eps-ball (Madry), "normal" (x + 0.001 N(0, 1), TRADES) or "zero".
            (default: "uniform")
        generator (torch.Generator): the random start's source; None draws from torch's global generator.

    The protocol: `pgd20` is PGD(eps=8/255, steps=20, step_size=2/255, start="uniform"); `pgd20-trades` the
    same with step_size=0.003 (the TRADES papers' evaluation).

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked to be in
        the eps-ball and in [0, 1] (`check_adversarial`).

    Example:
        >>> attack = PGD(model.eval(), eps=8 / 255)
        >>> x_adv = attack(x, y)
        >>> robust = (model(x_adv).argmax(1) == y).float().mean()
    """

    def __init__(self, model, eps: float, *, steps: int = 20, step_size: float = 2 / 255, start: Start = "uniform",
                 generator: torch.Generator | None = None):
        super().__init__(model, eps, generator)
        self.steps, self.step_size, self.start = steps, step_size, start

    def objective(self, xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.model(xa), y, reduction="sum")

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd(lambda xa: self.objective(xa, y), x, eps=self.eps, step_size=self.step_size, steps=self.steps,
                   start=self.start, generator=self.generator)


class FGSM(PGD):
    """FGSM, the fast gradient sign method, from "Explaining and Harnessing Adversarial Examples" (Goodfellow et al.,
    ICLR 2015) [https://arxiv.org/abs/1412.6572]: one signed-gradient step of size eps on the cross-entropy, from
    the input itself (no random start), clipped to [0, 1].

    Distance: L-inf.

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels.
        eps (float): the L-inf budget and the step size, e.g. 8/255.
        generator (torch.Generator): unused (FGSM draws nothing); kept for the attacks' common signature.

    The protocol: `fgsm` is FGSM(eps=8/255).

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked.

    Example:
        >>> x_adv = FGSM(model.eval(), eps=8 / 255)(x, y)
    """

    def __init__(self, model, eps: float, generator: torch.Generator | None = None):
        super().__init__(model, eps, steps=1, step_size=eps, start="zero", generator=generator)
