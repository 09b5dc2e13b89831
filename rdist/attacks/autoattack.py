"""AutoAttack and Square through the `pyautoattack` package (the maintained AutoAttack code)."""

from __future__ import annotations

import logging
import re
from typing import Callable

import torch

from rdist.attacks.base import Attack
from rdist.device import model_device

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


class _Capture(logging.Handler):
    """What pyautoattack logs while it runs: its batch lines go to `report` (a progress bar), and every other
    record at INFO or above (its checks' warnings: randomised defence, softmax output, zero gradients, Square
    beating the white-box attacks, ...) is kept in `kept`, so that the report can show it (rdist.attacks.flags).

    Once a handler is attached, Python's last-resort printing of warnings stops: without this one they would be
    lost behind a progress bar, or printed raw and recorded nowhere with --quiet."""

    def __init__(self, report: Callable[[str], None] | None, kept: list[str]):
        super().__init__(logging.DEBUG)
        self.report, self.kept = report, kept

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        match = _BATCH_LINE.match(message)
        if match:
            if self.report:
                self.report(f"{match['attack']} batch {match['done']}/{match['total']}")
        elif record.levelno >= logging.INFO:
            self.kept.append(message)


class AutoAttack(Attack):
    """AutoAttack, from "Reliable evaluation of adversarial robustness with an ensemble of diverse parameter-free
    attacks" (Croce and Hein, ICML 2020) [https://arxiv.org/abs/2003.01690], run by `pyautoattack`, the maintained
    package of the official code. An example counts as robust only if every component fails on it.

    Official code: https://github.com/fra31/auto-attack

    Distance: L-inf or L2 (`norm`).

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels.
        eps (float): the budget in [0, 1] pixel units, e.g. 8/255 (L-inf) or 0.5 (L2).
        version (str): "standard" (APGD-CE, APGD-T, FAB-T, Square with 5000 queries: the RobustBench
            protocol), "plus" (all six components with restarts) or "rand" (APGD-CE and APGD-DLR with EOT, for
            randomised defences). (default: "standard")
        components (list[str]): a custom subset of AA_COMPONENTS instead of a version, e.g. ["apgd-ce", "apgd-t"].
        seed (int): AutoAttack's seed; `reseed` sets it per batch. (default: 0)
        on_stage (callable): receives a short text after each of AutoAttack's internal batches (progress bars).
        name (str): the attack's name in reports and errors. (default: "aa")
        norm (str): "Linf" or "L2", AutoAttack's own versions of each component. (default: "Linf")

    The protocol: `aa` is AutoAttack(eps=8/255, version="standard"); `aa-plus`, `aa-rand` the other versions;
    `aa:C1+C2` a custom subset. What pyautoattack's checks log during a run is kept in `warnings`.

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked.

    Example:
        >>> x_adv = AutoAttack(model.eval(), eps=8 / 255)(x, y)
    """

    def __init__(self, model, eps: float, *, version: str = "standard", components: list[str] | None = None,
                 seed: int = 0, on_stage: Callable[[str], None] | None = None, name: str = "aa",
                 norm: str = "Linf"):
        super().__init__(model, eps, norm=norm)
        from pyautoattack import AutoAttack as _AutoAttack

        self.name = name
        device = model_device(model)
        kwargs = {"attacks": components, "version": "custom"} if components else {"version": version}
        self.adversary = _AutoAttack(model, eps=eps, norm=self.norm, seed=seed, device=device, **kwargs)
        self.on_stage = on_stage
        self.warnings: list[str] = []  # every non-progress record pyautoattack logged, over all batches

    def reseed(self, seed: int) -> None:
        # pyautoattack hands its seed to each component when it runs: setting it is a fresh AutoAttack's start.
        self.adversary.seed = seed

    def perturb(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logger = self.adversary.logger
        handler = _Capture(self.on_stage, self.warnings)
        previous_level = logger.level
        logger.addHandler(handler)
        # Its batch lines are debug records: asked for only when a progress bar shows them.
        logger.setLevel(logging.DEBUG if self.on_stage else logging.INFO)
        if self.norm != "Linf":  # pyautoattack's L2 and L1 code flattens with .view, which channels-last refuses
            x = x.contiguous()
        try:
            x_adv, _ = self.adversary.run_standard_evaluation(x, y, batch_size=len(x))
        finally:
            logger.removeHandler(handler)
            logger.setLevel(previous_level)
        return x_adv


class Square(AutoAttack):
    """The Square attack, from "Square Attack: a query-efficient black-box adversarial attack via random search"
    (Andriushchenko et al., ECCV 2020) [https://arxiv.org/abs/1912.00049], as AutoAttack configures it
    (`pyautoattack`, 5000 queries, one restart). It needs the model's logits only, never a gradient: it runs on
    ONNX Runtime models too.

    Official code: https://github.com/max-andr/square-attack (AutoAttack's square.py, run here, is by the same authors)

    Distance: L-inf or L2 (`norm`).

    Arguments:
        model (nn.Module): the model to attack, in eval mode, taking [0, 1] pixels.
        eps (float): the budget in [0, 1] pixel units, e.g. 8/255 (L-inf) or 0.5 (L2).
        seed (int): the random search's seed; `reseed` sets it per batch. (default: 0)
        on_stage (callable): receives a short text after each internal batch (progress bars).
        norm (str): "Linf" or "L2". (default: "Linf")

    The protocol: `square` is Square(eps=8/255), 5000 queries.

    Shape:
        x: (N, C, H, W) floats in [0, 1]; y: (N,) class indices; returns x_adv of x's shape, checked.

    Example:
        >>> x_adv = Square(model.eval(), eps=8 / 255)(x, y)
    """

    def __init__(self, model, eps: float, *, seed: int = 0, on_stage=None, norm: str = "Linf"):
        super().__init__(model, eps, components=["square"], seed=seed, on_stage=on_stage, name="square", norm=norm)
