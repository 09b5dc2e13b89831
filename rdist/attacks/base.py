"""The shape every attack shares: `Attack(model, eps)(x, y) -> x_adv`, checked against its budget."""

from __future__ import annotations

import torch
from torch import nn

from rdist.errors import AdversarialBoundsError

TOLERANCE = 1e-6


def check_adversarial(x_adv: torch.Tensor, x: torch.Tensor, eps: float, attack: str = "attack") -> None:
    """Abort if any adversarial example leaves the eps-ball around x or the [0, 1] box."""
    if x_adv.shape != x.shape:
        raise AdversarialBoundsError(f"{attack} returned shape {tuple(x_adv.shape)} for inputs {tuple(x.shape)}")
    if not torch.isfinite(x_adv).all():
        raise AdversarialBoundsError(f"{attack} produced non-finite pixels")
    # In fp32: a difference of two bf16 tensors is itself rounded to bf16.
    distance = (x_adv.float() - x.float()).abs().amax().item() if x.numel() else 0.0
    if distance > eps + TOLERANCE:
        raise AdversarialBoundsError(f"{attack} left the eps-ball: L-inf distance {distance:.8f} > eps {eps:.8f}")
    low, high = x_adv.min().item(), x_adv.max().item()
    if low < -TOLERANCE or high > 1 + TOLERANCE:
        raise AdversarialBoundsError(f"{attack} left [0, 1]: pixel range [{low:.6f}, {high:.6f}]")


class Attack:
    """Call with clean inputs in [0, 1] and labels; returns checked adversarial inputs.

    Subclasses implement `perturb`. The model is expected in eval mode (the evaluator sets it).
    """

    name = "attack"

    def __init__(self, model: nn.Module, eps: float, generator: torch.Generator | None = None):
        self.model, self.eps, self.generator = model, eps, generator

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reseed(self, seed: int) -> None:
        """Restart the random starts from `seed`: one attack object serves every batch of an evaluation, and
        each batch still draws what a fresh attack seeded so would."""
        if self.generator is not None:
            self.generator.manual_seed(seed)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x_adv = self.perturb(x, y)
        check_adversarial(x_adv, x, self.eps, self.name)
        return x_adv
