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
    """Madry's PGD on cross-entropy with a uniform random start."""

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
    """One signed-gradient step of size eps on cross-entropy, no random start."""

    def __init__(self, model, eps: float, generator: torch.Generator | None = None):
        super().__init__(model, eps, steps=1, step_size=eps, start="zero", generator=generator)
