"""The one projected-gradient core. Every PGD-style attack, and every method's inner maximisation,
calls `pgd` with its own objective, start, step and norm; BN mode is the caller's choice."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

import torch
import torch.nn.functional as F

from rdist.attacks.base import NORMS, Attack, Norm, flat_norm

Start = Literal["zero", "uniform", "normal"]
# What `pgd` reports at each step, for evaluation's attack-failure checks (rdist.attacks.flags): the step's index,
# the objective's per-example values (or its scalar) and the input gradient; it returns the gradient the step uses.
Observer = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


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


def _draw(sample: Callable[..., torch.Tensor], x: torch.Tensor, generator: Noise,
          tail: tuple[int, ...] | None = None) -> torch.Tensor:
    """`sample` of x's shape (or of (N, *tail)), each row drawn where one process drawing the whole batch would."""
    tail = tuple(x.shape[1:]) if tail is None else tail
    if isinstance(generator, ShardNoise):
        full = sample((generator.total, *tail), generator=generator.generator, device=x.device, dtype=x.dtype)
        return full[generator.start:generator.stop]
    return sample((len(x), *tail), generator=generator, device=x.device, dtype=x.dtype)


def random_start(x: torch.Tensor, eps: float, start: Start, generator: Noise, *,
                 clamp: bool = True, norm: Norm = "Linf") -> torch.Tensor:
    """The first iterate: x itself, uniform in the eps-ball around it (Madry), or x + 0.001 N(0, 1) (TRADES).

    In L-inf the uniform start is U(-eps, eps) per pixel; in L2 a Gaussian direction scaled to a radius U(0, eps)
    (torchattacks' PGDL2, the robustness library). `clamp` projects it into [0, 1] (and the eps-ball), as
    evaluation attacks do (torchattacks, AutoAttack's PGD). The training methods' official codes all start at the
    raw x + noise instead, so a pixel at 0 or 1 first gets a gradient outside the box: `clamp=False` reproduces
    that (the first step clamps it back)."""
    if start == "zero":
        return x.clone()
    if start == "uniform" and norm == "Linf":
        noise = (_draw(torch.rand, x, generator) * 2 - 1) * eps
    elif start == "uniform":
        direction = _draw(torch.randn, x, generator)
        radius = _draw(torch.rand, x, generator, tail=(1,) * (x.dim() - 1))
        noise = direction / flat_norm(direction).clamp_min(1e-12) * radius * eps
    elif start == "normal":
        noise = 0.001 * _draw(torch.randn, x, generator)
    else:
        raise ValueError(f"unknown PGD start {start!r}")
    return project(x + noise, x, eps, norm) if clamp else x + noise


def project(xa: torch.Tensor, x: torch.Tensor, eps: float, norm: Norm = "Linf") -> torch.Tensor:
    """xa projected into the eps-ball around x and into [0, 1].

    L2: into the box first, then the ball (TRADES's official L2 attack, `renorm_` after `clamp_`): scaling a
    perturbation towards 0 keeps x + delta between two points of the box, so the result is in both."""
    if norm == "Linf":
        return torch.min(torch.max(xa, x - eps), x + eps).clamp_(0, 1)
    delta = xa.clamp(0, 1) - x
    return x + delta * (eps / flat_norm(delta).clamp_min(1e-12)).clamp(max=1.0)


def ascent_direction(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent step of unit size: the gradient's sign (L-inf), its direction (L2; 0 where it is 0)."""
    if norm == "Linf":
        return grad.sign()
    return grad / flat_norm(grad).clamp_min(1e-12)


def pgd(objective: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, *, eps: float, step_size: float,
        steps: int, start: Start = "uniform", generator: Noise = None, clamp_start: bool = True,
        norm: Norm = "Linf", observe: Observer | None = None) -> torch.Tensor:
    """Maximise `objective(xa)` (a scalar summed over the batch, or its per-example values, which are summed, so
    that each example gets its own gradient) with steepest-ascent steps of `step_size` in `norm` (signed gradients
    in L-inf, normalised gradients in L2), projected to the eps-ball around x and to [0, 1]. `clamp_start=False` is
    the training methods' unclamped start (`random_start`); every step is projected either way.

    `observe` (evaluation only, never a training step) sees each step's objective values and gradient, as the
    steps compute them anyway, and returns the gradient to step with."""
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}")
    x = x.detach()
    xa = random_start(x, eps, start, generator, clamp=clamp_start, norm=norm)
    for step in range(steps):
        xa.requires_grad_(True)
        value = objective(xa)
        # autograd.grad, not backward: the model's parameter gradients stay untouched.
        (grad,) = torch.autograd.grad(value if value.ndim == 0 else value.sum(), xa)
        if observe is not None:
            grad = observe(step, value.detach(), grad)
        xa = project(xa.detach() + step_size * ascent_direction(grad, norm), x, eps, norm)
    return xa.detach()


class PGD(Attack):
    """PGD, projected gradient descent, from "Towards Deep Learning Models Resistant to Adversarial Attacks"
    (Madry et al., ICLR 2018) [https://arxiv.org/abs/1706.06083]: steepest ascent on the cross-entropy (signed
    gradients in L-inf, normalised gradients in L2), projected after every step to the eps-ball around the input and
    to [0, 1].

    Official code: https://github.com/MadryLab/cifar10_challenge (pgd_attack.py; MNIST's: MadryLab/mnist_challenge)

    Distance: L-inf or L2 (`norm`).

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels (it normalises inside).
        eps (float): the budget in [0, 1] pixel units, e.g. 8/255 (L-inf) or 0.5 (L2).
        steps (int): gradient steps. (default: 20)
        step_size (float): the size of each step, in the norm's units. (default: 2/255)
        start (str): "uniform" in the eps-ball (Madry), "normal" (x + 0.001 N(0, 1), TRADES) or "zero".
            (default: "uniform")
        generator (torch.Generator): the random start's source; None draws from torch's global generator.
        norm (str): "Linf" or "L2". (default: "Linf")

    The protocol: `pgd20` is PGD(eps=8/255, steps=20, step_size=2/255, start="uniform"); `pgd20-trades` the
    same with step_size=0.003 (the TRADES papers' evaluation). In L2 `pgd20` steps eps/4, the ratio of L-inf's
    2/255 to 8/255.

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked to be in
        the eps-ball and in [0, 1] (`check_adversarial`).

    Example:
        >>> attack = PGD(model.eval(), eps=8 / 255)
        >>> x_adv = attack(x, y)
        >>> robust = (model(x_adv).argmax(1) == y).float().mean()
    """

    observer: Observer | None = None  # set by the evaluator for its attack-failure checks (rdist.attacks.flags)

    def __init__(self, model, eps: float, *, steps: int = 20, step_size: float = 2 / 255, start: Start = "uniform",
                 generator: torch.Generator | None = None, norm: Norm = "Linf"):
        super().__init__(model, eps, generator, norm=norm)
        self.steps, self.step_size, self.start = steps, step_size, start

    def losses(self, xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The per-example loss the attack maximises."""
        return F.cross_entropy(self.model(xa), y, reduction="none")

    def objective(self, xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.losses(xa, y).sum()

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return pgd(lambda xa: self.losses(xa, y), x, eps=self.eps, step_size=self.step_size, steps=self.steps,
                   start=self.start, generator=self.generator, norm=self.norm, observe=self.observer)


class FGSM(PGD):
    """FGSM, the fast gradient sign method, from "Explaining and Harnessing Adversarial Examples" (Goodfellow et al.,
    ICLR 2015) [https://arxiv.org/abs/1412.6572]: one signed-gradient step of size eps on the cross-entropy, from
    the input itself (no random start), clipped to [0, 1]. In L2, one step of size eps along the normalised
    gradient (the fast gradient method).

    Official code: none (the paper published none).

    Distance: L-inf or L2 (`norm`).

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels.
        eps (float): the budget and the step size, e.g. 8/255.
        generator (torch.Generator): unused (FGSM draws nothing); kept for the attacks' common signature.
        norm (str): "Linf" or "L2". (default: "Linf")

    The protocol: `fgsm` is FGSM(eps=8/255).

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked.

    Example:
        >>> x_adv = FGSM(model.eval(), eps=8 / 255)(x, y)
    """

    def __init__(self, model, eps: float, generator: torch.Generator | None = None, norm: Norm = "Linf"):
        super().__init__(model, eps, steps=1, step_size=eps, start="zero", generator=generator, norm=norm)
