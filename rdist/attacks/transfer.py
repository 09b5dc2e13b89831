"""Transfer attacks: examples crafted with any white-box attack on a surrogate, scored on the target."""

from __future__ import annotations

from rdist.attacks.base import Attack


class Transfer(Attack):
    def __init__(self, model, eps: float, source: Attack, name: str = "transfer"):
        super().__init__(model, eps)
        self.source, self.name = source, name

    def perturb(self, x, y):
        return self.source(x, y)

    def reseed(self, seed: int) -> None:
        self.source.reseed(seed)
