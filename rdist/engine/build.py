"""Everything a run is made of, built and checked from a TrainConfig before the first step.

Cheap checks come first (method, schedule, teachers wanted, architecture name, teacher shapes), so that
bad input fails in a second rather than after a data download.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdist.artifact import check_fits, load_weights
from rdist.data import Dataset, ExtraData, dataset_shape, load_dataset, open_extra_data
from rdist.data.mixed import mixed_counts
from rdist.device import channels_last
from rdist.engine.companions import CompanionPlan, build_companion, plan_companions
from rdist.engine.config import TrainConfig, fill_paper_defaults
from rdist.engine.ddp import DataParallelTraining
from rdist.engine.rundir import default_run_dir
from rdist.engine.schedule import Schedule, resolve_schedule
from rdist.errors import RdistError
from rdist.methods import Method, Recipe, create_method, method_class, methods_taking, missing_teacher_hint, role
from rdist.models import create_model
from rdist.parallel import Ranks
from rdist.resolve import model_weights, resolve_teacher
from rdist.runs import RunDirectory

MIN_VAL_IMAGES = 500  # a validation split smaller than this makes PGD accuracy too noisy to select on


@dataclass
class Run:
    config: TrainConfig
    method: Method
    schedule: Schedule
    parallel: DataParallelTraining  # this process's part in a torchrun job (one process: rank 0 of 1)
    device: torch.device
    dataset: Dataset
    train_x: torch.Tensor
    train_y: torch.Tensor
    eval_x: torch.Tensor  # the images checkpoints are selected on: validation split, or test set if asked
    eval_y: torch.Tensor
    student: nn.Module
    teachers: dict[str, nn.Module]  # by role, as the method declares them; frozen, eval mode
    directory: RunDirectory
    companions: dict[str, nn.Module] = field(default_factory=dict)  # by role (Method.companions); trained
    companion_plans: dict[str, CompanionPlan] = field(default_factory=dict)
    extra: ExtraData | None = None  # generated images mixed into every batch (`--extra-data`), checked and open

    @property
    def run_dir(self) -> Path:
        return self.directory.path

    @property
    def ranks(self) -> Ranks:
        return self.parallel.group.ranks

    @property
    def eval_split(self) -> str:
        return self.config.select_on

    def identity(self) -> dict[str, Any]:
        """What must be equal for a resumed run to be the same run; stored in the checkpoint."""
        c = self.config
        extra = self.extra_data_provenance()
        return {"method": self.method.config(), "student": c.student, "initial_weights": c.initial_weights,
                "data": c.data, "teachers": c.teachers,
                "companions": {role: plan.to_dict() for role, plan in self.companion_plans.items()},
                "schedule": self.schedule.to_dict(), "seed": c.seed,
                "select_on": c.select_on, "val_size": c.val_size, "eval_n": len(self.eval_y),
                "extra_data": {k: extra[k] for k in ("sources", "images", "fraction")} if extra else None}

    def extra_data_provenance(self) -> dict[str, Any] | None:
        """The generated images the run mixes in: sources as given, local files, image counts, layouts, and the
        share of every batch; None without."""
        if self.extra is None:
            return None
        return {**self.extra.describe(), "fraction": self.config.extra_fraction}

    def close(self) -> None:
        """Release what the run holds open (the extra data's files)."""
        if self.extra is not None:
            self.extra.close()


def build_run(config: TrainConfig) -> Run:
    """The run `config` describes; under torchrun this joins the job (the process group) first."""
    config, _ = fill_paper_defaults(config)
    config.validate()
    method, recipe = resolve_method(config)
    # The attack the method resolved (the recipe's unless given) is what the run evaluates at, stores in its
    # checkpoint (a resume then finds concrete values, not a recipe's that may change) and writes into the
    # artifacts' provenance.
    config = replace(config, eps=method.eps, step_size=method.step_size, attack_steps=method.attack_steps,
                     extra_fraction=config.generated_fraction)
    schedule = resolve_schedule(config, recipe)
    if config.extra_data is not None:
        mixed_counts(schedule.batch_size, config.extra_fraction)  # a batch with no real image is refused now
    _check_teachers_wanted(method, config)
    plans = plan_companions(config, method, schedule, recipe)
    # Joins the job under torchrun; checks the device exists.
    parallel = DataParallelTraining.start(config.device, config.dist_backend, config.sync_bn)
    return _build(config, method, schedule, parallel, plans)


def _build(config: TrainConfig, method: Method, schedule: Schedule, parallel: DataParallelTraining,
           plans: dict[str, CompanionPlan]) -> Run:
    group = parallel.group
    group.check_same(config=config.to_dict())
    channels, classes, size = dataset_shape(config.data)
    device = group.device
    torch.manual_seed(config.seed)
    student = create_model(config.student, num_classes=classes, in_channels=channels)
    method.reset_state(classes, device)
    with group.main_first():  # companions, teachers, initial weights and data may be downloaded: once, by rank 0
        # Right after the student: a companion's initialisation depends on the seed alone.
        companions = {role: build_companion(plan, config, parallel) for role, plan in plans.items()}
        # The generated images next: a bad file is refused in a second, before any teacher or dataset download.
        extra = (open_extra_data(config.extra_data, image_shape=(channels, size, size), num_classes=classes)
                 if config.extra_data is not None else None)
        if config.initial_weights:
            _load_initial_weights(student, config)
        teachers = {name: _load_teacher(config.teachers[name], name, device, config.data) for name in method.teachers}
        dataset = load_dataset(config.data, root=config.data_dir, device=device)
    student = parallel.convert_sync_bn(student).to(device)
    if config.select_on == "test":  # the papers' protocol: all training data trains, the test set selects
        train_x, train_y, eval_x, eval_y = dataset.x_train, dataset.y_train, dataset.x_test, dataset.y_test
    else:
        n_val = validation_size(len(dataset.y_train), config.val_size)
        train_x, train_y, eval_x, eval_y = dataset.validation_split(n_val, seed=0)
    if parallel.distributed:
        # Generated images fill every batch up to the batch size, the last one too.
        parallel.check_batch(schedule.batch_size, len(train_y), filled=bool(extra and config.extra_fraction))
    eval_n = min(config.eval_n or (1000 if device.type == "cuda" else 500), len(eval_y))
    for model in (student, *teachers.values()):
        channels_last(model)
    directory = RunDirectory(config.resume or config.out) if config.resume or config.out else \
        default_run_dir(config)
    return Run(config, method, schedule, parallel, device, dataset, train_x, train_y, eval_x[:eval_n], eval_y[:eval_n],
               student, teachers, directory, companions, plans, extra)


def validation_size(n: int, val_size: float) -> int:
    """Images of `n` training images held out to select checkpoints on."""
    return max(round(val_size * n), min(MIN_VAL_IMAGES, n // 5))


def resolve_method(config: TrainConfig) -> tuple[Method, Recipe]:
    """The method `config` asks for, and the recipe its schedule follows.

    With `--recipe paper`, the paper's recipe, attack and hyper-parameters for this dataset and student
    architecture (a paper may set them per dataset or architecture); values the user gave still win. Without it,
    the method's class defaults and the default attack.
    """
    values = {k: v for k, v in config.method_args.items() if v is not None}
    attack = {"eps": config.eps, "step_size": config.step_size, "attack_steps": config.attack_steps,
              "norm": config.norm}
    recipe = None
    if config.recipe == "paper":
        recipe, preset = method_class(config.method).paper_preset(config.data, config.student)
        values = {**preset, **values}
        attack = {"eps": recipe.eps, "step_size": recipe.step_size, "attack_steps": recipe.attack_steps,
                  **{k: v for k, v in attack.items() if v is not None}}
    method = create_method(config.method, **attack, **values)  # None: the method's default attack
    return method, recipe or method.recipe


def _check_teachers_wanted(method: Method, config: TrainConfig) -> None:
    """One model for each teacher role the method declares, and none for a role it does not."""
    for name in method.teachers:
        if config.teachers.get(name):
            continue
        wanted, hint = role(name), missing_teacher_hint(method.name, config.data, name)
        how = f" ({wanted.how_to_get.format(data=config.data)})" if wanted.how_to_get else ""
        raise RdistError(f"{method.name} needs {wanted.wanted} and {hint}: pass {wanted.usage}{how}")
    for name in config.teachers:
        if name in method.teachers:
            continue
        given = role(name)
        if not method.teachers:
            raise RdistError(f"{method.name} trains without a teacher: drop {given.usage}")
        takers = methods_taking(name)
        raise RdistError(f"{method.name} takes no {given.noun}: drop {given.usage} (its teachers: "
                         f"{', '.join(method.teachers)}{'; ' + ', '.join(takers) + ' take one' if takers else ''})")


def _load_teacher(spec: str, role_name: str, device: torch.device, data: str) -> nn.Module:
    """The frozen teacher `spec` of role `role_name`, refused when built for other classes or another input shape."""
    noun = role(role_name).noun
    teacher = resolve_teacher(spec, device, dataset=data)
    check_fits(getattr(teacher, "rdist_meta", {}), data, f"{noun} {spec}", instead=f"a {noun}")
    return teacher


def _load_initial_weights(student: nn.Module, config: TrainConfig) -> None:
    """The weights of model `config.initial_weights` (any model name) into `student`: the run fine-tunes them. The
    model must be an artifact of the student's architecture, for the run's classes and input shape."""
    spec, what = config.initial_weights, f"--initial-weights {config.initial_weights}"
    meta, state = model_weights(spec, config.data)
    arch = meta["arch"]
    if arch["name"] != config.student:
        raise RdistError(f"{what} is a {arch['name']}, not a {config.student}: pass --student {arch['name']} (the "
                         f"architecture of the weights), or initial weights of a {config.student}")
    check_fits(meta, config.data, what, instead=f"weights of a {config.student}")
    if arch.get("mean") is not None:
        raise RdistError(f"{what} normalises its input inside itself (mean {arch['mean']}, std {arch['std']}), which "
                         f"a {config.student} student does not: pass the weights of a model trained by rdist")
    load_weights(student, state, what)
