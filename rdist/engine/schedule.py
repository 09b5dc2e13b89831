"""The optimisation schedule: SGD (momentum 0.9, optionally Nesterov) whose lr falls x0.1 at milestone epochs or
follows a cosine to 0, after an optional linear warm-up; the weight average; the loss's label smoothing. From a
paper recipe or short-run defaults.

The lr is a function of the optimiser step, set before each step (`lr_factor`): the papers' step schedules change
it at epoch boundaries only, the generated-data recipes (Gowal et al. 2020, Rebuffi et al. 2021, Wang et al. 2023)
every step. Their official code (DeepMind's `adversarial_robustness/jax/utils.py`, `get_cosine_schedule`) warms up
linearly from 0 over the first W steps, lr(t) = lr t / W (the first update runs at lr 0), then decays as
lr (1 + cos(pi (t - W) / (T - W))) / 2 over the remaining T - W steps; rdist computes exactly that, with W and T
whole epochs of the run's batches.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable

import torch
from torch import nn

from rdist.engine.config import TrainConfig
from rdist.errors import RdistError
from rdist.methods import Recipe
from rdist.utils import unknown

RECIPES = ("paper",)
MOMENTUM = 0.9
DEFAULT_BATCH_SIZE = 128


@dataclass(frozen=True)
class Schedule:
    epochs: int
    milestones: tuple[int, ...]  # lr x0.1 after each of these epochs (the step schedule; none for cosine)
    lr: float
    weight_decay: float
    batch_size: int
    swa_start: int | None  # first epoch whose weights enter the SWA average
    ema: float | None = None  # decay of the per-step moving average of the weights
    lr_schedule: str = "step"  # "step" or "cosine"
    warmup_epochs: int = 0  # of linear warm-up from lr 0
    nesterov: bool = False
    label_smoothing: float = 0.0  # of the method's cross-entropy terms

    def to_dict(self) -> dict:
        return {**asdict(self), "milestones": list(self.milestones)}

    @property
    def average(self) -> dict | None:
        """The weight average the run evaluates and saves: {"kind": "ema", "decay"} or {"kind": "swa", "start"}."""
        if self.ema is not None:
            return {"kind": "ema", "decay": self.ema}
        if self.swa_start is not None:
            return {"kind": "swa", "start": self.swa_start}
        return None


def resolve_schedule(config: TrainConfig, recipe: Recipe) -> Schedule:
    """The schedule `config` asks for, given the method's paper `recipe` for this run (`resolve_method`)."""
    if config.recipe is not None and config.recipe not in RECIPES:
        raise unknown("recipe", config.recipe, RECIPES)
    if config.recipe == "paper":
        epochs = config.epochs or recipe.epochs
        scale = epochs / recipe.epochs  # a shortened paper run keeps the recipe's proportions
        milestones = config.milestones if config.milestones is not None else _scaled(recipe.milestones, scale)
        # An average given explicitly replaces the recipe's, of either kind (TrainConfig refuses both given).
        explicit = config.swa_start is not None or config.ema is not None
        swa_start = config.swa_start if explicit else (max(1, round(recipe.swa_start * scale))
                                                       if recipe.swa_start else None)
        ema = config.ema if explicit else recipe.ema
        warmup = (config.warmup_epochs if config.warmup_epochs is not None else
                  max(1, round(recipe.warmup_epochs * scale)) if recipe.warmup_epochs else 0)
        lr, batch_size = config.lr or recipe.lr, config.batch_size or recipe.batch_size
        lr_schedule, nesterov, smoothing = recipe.lr_schedule, recipe.nesterov, recipe.label_smoothing
    else:
        if config.epochs is None:
            raise RdistError("give the number of epochs (--epochs N) for a short run, or --recipe paper for the "
                             "paper's full schedule")
        epochs = config.epochs
        milestones = config.milestones if config.milestones is not None else _scaled((0.5, 0.75), epochs)
        swa_start, ema, warmup = config.swa_start, config.ema, config.warmup_epochs or 0
        # The recipe's lr goes with its weight decay (a recipe may pair a small lr with a large weight decay).
        lr, batch_size = config.lr or recipe.lr, config.batch_size or DEFAULT_BATCH_SIZE
        lr_schedule, nesterov, smoothing = "step", False, 0.0
    lr_schedule = config.lr_schedule or lr_schedule
    nesterov = nesterov if config.nesterov is None else config.nesterov
    smoothing = smoothing if config.label_smoothing is None else config.label_smoothing
    weight_decay = recipe.weight_decay if config.weight_decay is None else config.weight_decay
    if lr_schedule == "cosine":
        milestones = ()  # the cosine decays every step; no milestone applies
    if any(m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise RdistError(f"lr milestones must be increasing positive epochs, got {list(milestones)}")
    if swa_start is not None and not 1 <= swa_start <= epochs:
        raise RdistError(f"swa_start {swa_start} is outside the run's epochs 1..{epochs}")
    if warmup >= epochs:
        raise RdistError(f"--warmup-epochs {warmup} leaves none of the run's {epochs} epochs to train at the full lr; "
                         f"give fewer warm-up epochs or more --epochs")
    return Schedule(epochs, tuple(milestones), lr, weight_decay, batch_size, swa_start, ema, lr_schedule, warmup,
                    nesterov, smoothing)


def _scaled(milestones: Iterable[float], scale: float) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(m * scale)) for m in milestones}))


def lr_factor(schedule: Schedule, steps_per_epoch: int):
    """The lr of optimiser step t (0-based, over the whole run) as a fraction of `schedule.lr`.

    step: x0.1 for each milestone m the step's epoch (t // steps_per_epoch + 1) is past, as the papers' per-epoch
    MultiStepLR; cosine: the official code's cosine over the steps after the warm-up, 0 at the last step's end.
    Either is multiplied by the warm-up's t / W during the first W = warmup_epochs x steps_per_epoch steps."""
    warmup = schedule.warmup_epochs * steps_per_epoch
    total = schedule.epochs * steps_per_epoch
    milestones = schedule.milestones

    def factor(t: int) -> float:
        ramp = t / warmup if t < warmup else 1.0
        if schedule.lr_schedule == "cosine":
            return ramp if t < warmup else 0.5 * (1 + math.cos(math.pi * min(t - warmup, total - warmup)
                                                              / (total - warmup)))
        return ramp * 0.1 ** sum(t // steps_per_epoch + 1 > m for m in milestones)

    return factor


def build_optimizer(model: nn.Module, schedule: Schedule, steps_per_epoch: int, momentum: float = MOMENTUM):
    """SGD with momentum (0.9 unless a method's companion sets another; Nesterov's if the schedule says) and weight
    decay on every parameter (as the papers), and its lr schedule, a LambdaLR the trainer steps after every optimiser
    step (`lr_factor`)."""
    optimizer = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=momentum,
                                weight_decay=schedule.weight_decay, nesterov=schedule.nesterov)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(schedule, steps_per_epoch))
    return optimizer, scheduler
