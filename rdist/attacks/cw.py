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
    def __init__(self, model, eps: float, *, steps: int = 30, step_size: float = 2 / 255, kappa: float = 50.0,
                 generator: torch.Generator | None = None):
        super().__init__(model, eps, steps=steps, step_size=step_size, start="uniform", generator=generator)
        self.kappa = kappa

    def objective(self, xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return margin_loss(self.model(xa), y, self.kappa).sum()
