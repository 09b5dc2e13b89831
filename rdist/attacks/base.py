"""The shape every attack shares: `Attack(model, eps)(x, y) -> x_adv`, checked against its budget."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from rdist.errors import AdversarialBoundsError, RdistError

TOLERANCE = 1e-6
Norm = Literal["Linf", "L2"]
NORMS: tuple[str, ...] = ("Linf", "L2")
# The distance of each norm, as messages name it.
NORM_TEXT = {"Linf": "L-inf", "L2": "L2"}


def check_norm(norm: str) -> str:
    if norm not in NORMS:
        raise RdistError(f"--norm must be Linf or L2, got '{norm}'")
    return norm


def flat_norm(v: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each example of `v`, shaped to broadcast against it: (N, 1, 1, 1) for images."""
    return v.flatten(1).norm(dim=1).view(-1, *[1] * (v.dim() - 1))


def distances(x_adv: torch.Tensor, x: torch.Tensor, norm: str = "Linf") -> torch.Tensor:
    """Each example's distance from x to x_adv in `norm`, in fp32 (a difference of two bf16 tensors is itself
    rounded to bf16)."""
    delta = (x_adv.float() - x.float()).flatten(1)
    return delta.abs().amax(1) if norm == "Linf" else delta.norm(dim=1)


def check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, attack: str = "attack",
                      norm: str = "Linf") -> None:
    """Abort if any adversarial example leaves the eps-ball around x (in `norm`) or the [0, 1] box."""
    if x_adv.shape != x.shape:
        raise AdversarialBoundsError(f"{attack} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise AdversarialBoundsError(f"{attack} produced non-finite pixels")
    distance = distances(x_adv, x, norm).amax().item() if x.numel() else 0.0
    if distance > eps + TOLERANCE:
        raise AdversarialBoundsError(f"{attack} left the eps-ball: {NORM_TEXT[norm]} distance {distance:.8f} > "
                                     f"eps {eps:.8f}")
    low, high = x_adv.min().item(), x_adv.max().item()
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise AdversarialBoundsError(f"{attack} left [0, 1]: pixel range [{low:.6f}, {high:.6f}]")


class Attack:
    """Call with clean inputs in [0, 1] and labels; returns checked adversarial inputs.

    Subclasses implement `perturb`. The model is expected in eval mode (the evaluator sets it).
    """

    name = "attack"

    def __init__(self, model: nn.Module, eps: float, generator: torch.Generator | None = None, *,
                 norm: Norm = "Linf"):
        self.model, self.eps, self.generator, self.norm = model, eps, generator, check_norm(norm)

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        """Restart the random starts from `seed`: one attack object serves every batch of an evaluation, and
        each batch still draws what a fresh attack seeded so would."""
        if self.generator is not None:
            self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self.perturb(x, y)
        check_adversarial(x_adv, x, self.eps, self.name, self.norm)
        return x_adv
