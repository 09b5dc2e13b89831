"""AutoAttack and Square through the `pyautoattack` package (the maintained AutoAttack code)."""

from __future__ import annotations

import logging
import re
from typing import Callable

import torch

from rdist.attacks.base import Attack

# pyautoattack logs "<attack> - <batch>/<batches> - ..." at debug level after each batch.
_BATCH_LINE = re.compile(r"^(?P<attack>[\w-]+) - (?P<done>\d+)/(?P<total>\d+) - ")
# AutoAttack's components (what `aa:C1+C2` may name), each with its cost per image as the standard version runs
# it: (gradient steps, forward-only queries). APGD-T and FAB-T take 100 steps against each of 9 target classes;
# Square queries the model 5000 times. A custom subset is costed alike, although pyautoattack then restarts
# APGD-CE/DLR and FAB up to 5 times on the images still robust (rdist.engine.cost leaves that out).
AA_COMPONENTS: dict[str, tuple[int, int]] = {
    "apgd-ce": (100, 0), "apgd-dlr": (100, 0), "apgd-t": (900, 0), "fab": (100, 0), "fab-t": (900, 0),
    "square": (0, 5000),
}
AA_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # `aa`: the standard version, in its order


class _ProgressHandler(logging.Handler):
    def __init__(self, report: Callable[[str], None]):
        super().__init__(logging.DEBUG)
        self.report = report

    def emit(self, record: logging.LogRecord) -> None:
        match = _BATCH_LINE.match(record.getMessage())
        if match:
            self.report(f"{match['attack']} batch {match['done']}/{match['total']}")


class AutoAttack(Attack):
    """AutoAttack `version` (standard, plus, rand) or a custom list of its components.

    `on_stage` receives a short text after each of AutoAttack's internal batches (for progress bars).
    """

    def __init__(self, model, eps: float, *, version: str = "standard", components: list[str] | None = None,
                 seed: int = 0, on_stage: Callable[[str], None] | None = None, name: str = "aa"):
        super().__init__(model, eps)
        from pyautoattack import AutoAttack as _AutoAttack

        self.name = name
        device = next(model.parameters()).device
        kwargs = {"attacks": components, "version": "custom"} if components else {"version": version}
        self.adversary = _AutoAttack(model, eps=eps, norm="Linf", seed=seed, device=device, **kwargs)
        self.on_stage = on_stage

    def reseed(self, seed: int) -> None:
        # pyautoattack hands its seed to each component when it runs: setting it is a fresh AutoAttack's start.
        self.adversary.seed = seed

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logger = self.adversary.logger
        handler = _ProgressHandler(self.on_stage) if self.on_stage else None
        previous_level = logger.level
        if handler:
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
        try:
            x_adv, _ = self.adversary.run_standard_evaluation(x, y, batch_size=len(x))
        finally:
            if handler:
                logger.removeHandler(handler)
                logger.setLevel(previous_level)
        return x_adv


class Square(AutoAttack):
    """The black-box Square attack, 5000 queries, as AutoAttack configures it."""

    def __init__(self, model, eps: float, *, seed: int = 0, on_stage=None):
        super().__init__(model, eps, components=["square"], seed=seed, on_stage=on_stage, name="square")
