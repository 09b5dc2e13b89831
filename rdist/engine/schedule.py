"""The optimisation schedule: SGD (momentum 0.9) with lr x0.1 at milestone epochs, from a paper recipe or
short-run defaults."""

from __future__ import annotations

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
    milestones: tuple[int, ...]  # lr x0.1 after each of these epochs
    lr: float
    weight_decay: float
    batch_size: int
    swa_start: int | None  # first epoch whose weights enter the average

    def to_dict(self) -> dict:
        return {**asdict(self), "milestones": list(self.milestones)}


def resolve_schedule(config: TrainConfig, recipe: Recipe) -> Schedule:
    """The schedule `config` asks for, given the method's paper `recipe` for this run (`resolve_method`)."""
    if config.recipe is not None and config.recipe not in RECIPES:
        raise unknown("recipe", config.recipe, RECIPES)
    if config.recipe == "paper":
        epochs = config.epochs or recipe.epochs
        scale = epochs / recipe.epochs  # a shortened paper run keeps the recipe's proportions
        milestones = config.milestones if config.milestones is not None else _scaled(recipe.milestones, scale)
        swa_start = config.swa_start or (max(1, round(recipe.swa_start * scale)) if recipe.swa_start else None)
        lr, batch_size = config.lr or recipe.lr, config.batch_size or recipe.batch_size
    else:
        if config.epochs is None:
            raise RdistError("give the number of epochs (--epochs N) for a short run, or --recipe paper for the "
                             "paper's full schedule")
        epochs = config.epochs
        milestones = config.milestones if config.milestones is not None else _scaled((0.5, 0.75), epochs)
        swa_start = config.swa_start
        # The recipe's lr goes with its weight decay (a recipe may pair a small lr with a large weight decay).
        lr, batch_size = config.lr or recipe.lr, config.batch_size or DEFAULT_BATCH_SIZE
    weight_decay = recipe.weight_decay if config.weight_decay is None else config.weight_decay
    if any(m < 1 for m in milestones) or list(milestones) != sorted(set(milestones)):
        raise RdistError(f"lr milestones must be increasing positive epochs, got {list(milestones)}")
    if swa_start is not None and not 1 <= swa_start <= epochs:
        raise RdistError(f"swa_start {swa_start} is outside the run's epochs 1..{epochs}")
    return Schedule(epochs, tuple(milestones), lr, weight_decay, batch_size, swa_start)


def _scaled(milestones: Iterable[float], scale: float) -> tuple[int, ...]:
    return tuple(sorted({max(1, round(m * scale)) for m in milestones}))


def build_optimizer(model: nn.Module, schedule: Schedule):
    """SGD with momentum 0.9 and weight decay on every parameter (as the papers), and its MultiStepLR.

    The scheduler steps once per epoch: milestone m means epochs m+1, m+2, ... run at a tenth of the lr.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=schedule.lr, momentum=MOMENTUM,
                                weight_decay=schedule.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(schedule.milestones), gamma=0.1)
    return optimizer, scheduler
