"""Companions: the networks a method trains beside the student (`Method.companions`: a peer network, say).

For each role the method declares, a run builds one network: the student's architecture unless the method's
`Companion` or `--companion ROLE=ARCH|MODEL` names another architecture (trained from its seeded initialisation)
or a model to start from (a file, zoo:, a RobustBench name, hf-hub:). It is converted as the student is (SyncBatchNorm
under --sync-bn, channels-last, DDP under torchrun, torch.compile under --compile) and trained by its own SGD and lr
schedule: the student's, but for the values the method's `Companion` sets (its milestones, epochs of the method's
recipe, scaled to the run's epochs as the recipe's are). The method gets it in `step.companions[role]`: unwrapped
and in eval mode during the attack (as the student, whose attack must not touch DDP's reducer), through DDP and in
train mode in the loss. One backward of the method's total loss fills every network's gradients; each optimiser
then steps. Weights, optimiser and schedule are in checkpoint.pt, and every epoch writes the companion as
<role>.safetensors beside last.safetensors, a model of its own with the run's provenance.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Callable

from torch import nn

from rdist.artifact import check_fits, load_weights
from rdist.data import dataset_shape
from rdist.device import channels_last
from rdist.engine.config import TrainConfig
from rdist.engine.ddp import DataParallelTraining
from rdist.engine.schedule import MOMENTUM, Schedule, _scaled, build_optimizer
from rdist.errors import RdistError
from rdist.methods import Method, Recipe
from rdist.models import create_model, known_architecture
from rdist.resolve import load_model
from rdist.runs import FILES, companion_file

ROLE_NAME = re.compile(r"[a-z][a-z0-9_-]*")


@dataclass(frozen=True)
class CompanionPlan:
    """One companion as a run resolves it, before anything is built: what must be equal for a resume."""

    role: str
    model: str  # the architecture it is built as, or the model it starts from
    schedule: Schedule
    momentum: float

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "schedule": self.schedule.to_dict(), "momentum": self.momentum}


def plan_companions(config: TrainConfig, method: Method, schedule: Schedule, recipe: Recipe
                    ) -> dict[str, CompanionPlan]:
    """Each companion the method declares, resolved from its `Companion`, `config.companions` and the student's
    `schedule`; roles the method does not declare are refused."""
    declared = method.companions
    for role in config.companions:
        if role not in declared:
            takes = f"its companions: {', '.join(declared)}" if declared else "it trains no companion"
            raise RdistError(f"{method.name} has no companion '{role}': drop --companion {role}=... ({takes})")
    plans = {}
    for role, spec in declared.items():
        if not ROLE_NAME.fullmatch(role) or companion_file(role) in FILES:
            raise RdistError(f"method {method.name}: companion role '{role}' must be a lower-case name other than "
                             "best and last (its model is written as <role>.safetensors)")
        scale = schedule.epochs / recipe.epochs  # the recipe's epochs -> the run's, as the student's milestones
        own = replace(schedule, lr=spec.lr or schedule.lr,
                      weight_decay=schedule.weight_decay if spec.weight_decay is None else spec.weight_decay,
                      milestones=schedule.milestones if spec.milestones is None else _scaled(spec.milestones, scale))
        model = config.companions.get(role) or spec.model or config.student
        plans[role] = CompanionPlan(role, model, own, MOMENTUM if spec.momentum is None else spec.momentum)
    return plans


def build_companion(plan: CompanionPlan, config: TrainConfig, parallel: DataParallelTraining) -> nn.Module:
    """The network of `plan`, trainable, on this rank's device, converted as the student is (but for DDP, which
    `Companions` adds): an architecture from the global RNG (seeded), or a model's weights."""
    channels, classes, _ = dataset_shape(config.data)
    device = parallel.group.device
    what = f"companion {plan.role} ({plan.model})"
    if known_architecture(plan.model):
        model = create_model(plan.model, num_classes=classes, in_channels=channels)
    else:
        model = load_model(plan.model, device, dataset=config.data)
        if not isinstance(model, nn.Module) or getattr(model, "rdist_arch", None) is None:
            raise RdistError(f"{what} is not a model rdist can train: pass an architecture or an .safetensors model")
        check_fits(getattr(model, "rdist_meta", {}), config.data, what, instead="a model")
    model = parallel.convert_sync_bn(model).to(device).requires_grad_(True).train()
    channels_last(model)
    return model


class Companions:
    """The trainer's side of a run's companions: the modules each phase runs, their optimisers and schedules, and
    their part of the checkpoint."""

    def __init__(self, models: dict[str, nn.Module], plans: dict[str, CompanionPlan],
                 parallel: DataParallelTraining, compile_: Callable[[nn.Module], nn.Module], steps_per_epoch: int):
        self.models, self.plans = models, plans
        self.optimizers, self.schedulers = {}, {}
        for role, model in models.items():
            self.optimizers[role], self.schedulers[role] = build_optimizer(
                model, plans[role].schedule, steps_per_epoch, momentum=plans[role].momentum)
        self.attack_view = {role: compile_(model) for role, model in models.items()}
        wrapped = {role: parallel.wrap(model) for role, model in models.items()}
        self.update_view = {role: self.attack_view[role] if wrapped[role] is model else compile_(wrapped[role])
                            for role, model in models.items()}

    def for_attack(self) -> dict[str, nn.Module]:
        """What `perturb` gets: the unwrapped modules, in eval mode."""
        for model in self.models.values():
            model.eval()
        return self.attack_view

    def for_update(self) -> dict[str, nn.Module]:
        """What `loss` gets: the modules the backward reaches through DDP, in train mode."""
        for model in self.models.values():
            model.train()
        return self.update_view

    def step_schedules(self) -> None:
        """After every optimiser step, as the student's (`build_optimizer`)."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    def state_dict(self) -> dict[str, dict[str, Any]]:
        return {role: {"model": model.state_dict(), "optimizer": self.optimizers[role].state_dict(),
                       "scheduler": self.schedulers[role].state_dict()} for role, model in self.models.items()}

    def load_state_dict(self, state: dict[str, dict[str, Any]], source: str) -> None:
        if set(state) != set(self.models):
            raise RdistError(f"it holds companions {sorted(state) or 'none'}, this run trains "
                             f"{sorted(self.models) or 'none'}")
        for role, model in self.models.items():
            load_weights(model, state[role]["model"], f"{source} (companion {role})")
            self.optimizers[role].load_state_dict(state[role]["optimizer"])
            self.schedulers[role].load_state_dict(state[role]["scheduler"])
