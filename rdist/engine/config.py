"""What a training run is: every choice the user makes, in one dataclass that the checkpoint stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rdist.errors import RdistError
from rdist.methods import Default, paper_defaults
from rdist.utils import unknown

SELECT_ON = ("val", "test")
LR_SCHEDULES = ("step", "cosine")
DEFAULT_EXTRA_FRACTION = 0.7  # the generated-data recipes' share of each batch (Gowal, Rebuffi, Wang et al.)


@dataclass
class TrainConfig:
    """One training run. `None` means "the method's paper value" (method_args) or "the default" (schedule, attack).

    Left-out fields a distillation paper fixes (data, the recipe when `epochs` is not given either, the teachers)
    take that paper's values when the run is built (`fill_paper_defaults`); `method` may be an alias, recorded
    under its canonical name. `teachers` names one model per role the method declares (`Method.teachers`), in any
    form `rdist.resolve` takes; `companions` may name, per role of a network the method trains beside the student
    (`Method.companions`), an architecture or a model to start from.

    Without `recipe="paper"` the schedule is short-run friendly: the given `epochs`, lr 0.1, batch 128,
    the method's weight decay, lr x0.1 at 50% and 75% of the epochs, and the attack is 10 steps of 2/255 within
    8/255. With it, the method's paper recipe, attack included (some papers attack at 0.031, 0.007); fields given
    explicitly still override it (a paper recipe run for fewer epochs scales its milestones). `build_run`
    stores the resolved attack back, so a run's checkpoint and provenance hold concrete values.
    """

    method: str
    student: str
    # Any model name (a published student, a file, ...) whose weights the student starts from instead of a random
    # initialisation: fine-tuning. Its architecture must be `student`'s, its classes and input those of `data`.
    initial_weights: str | None = None
    data: str | None = None  # [default: cifar10]
    # The folder the named datasets are read from and downloaded to (`rdist.data.data_root`) [default:
    # $RDIST_DATA_DIR, else the cache]; where the data lies is no part of what the run is.
    data_dir: str | None = None
    # role -> any model name: a path, zoo:NAME, a RobustBench name, hf-hub:ORG/REPO[@REV]
    teachers: dict[str, str] = field(default_factory=dict)
    # role -> an architecture or a model name to start from, for the networks the method trains beside the student
    # (`Method.companions`) [default: the method's choice, else the student's architecture]
    companions: dict[str, str] = field(default_factory=dict)
    recipe: str | None = None  # "paper" or None
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    swa_start: int | None = None  # first epoch whose weights enter the SWA average (evaluated and saved from then on)
    ema: float | None = None  # decay of an exponential moving average of the weights, updated every step
    lr_schedule: str | None = None  # "step" (lr x0.1 at the milestones) or "cosine" [default: the recipe's, step]
    warmup_epochs: int | None = None  # epochs of linear lr warm-up from 0, step by step [default: the recipe's, 0]
    nesterov: bool | None = None  # Nesterov momentum [default: the recipe's, off]
    label_smoothing: float | None = None  # of the cross-entropy terms of the method's loss [default: the recipe's, 0]
    # `rdist.data.open_extra_data`: PATH.npz, https://.../NAME.npz, hf://datasets/ORG/REPO[@REV]/PATH, parts
    extra_data: str | None = None  # generated images mixed into every batch (PATH.npz, hf://, https://, a,b,...)
    extra_fraction: float | None = None  # the generated share of every batch [default: 0.7 with extra_data]
    max_steps: int | None = None  # stop after this many optimiser steps in all (short runs); still saves
    eps: float | None = None  # budget of the training attack and of the evaluation, in `norm`
    step_size: float | None = None
    attack_steps: int | None = None
    norm: str = "Linf"  # the distance of the training attack's ball and the evaluation's: Linf or L2
    # The method's hyper-parameters given (`--hparam`, `--alpha`, ...), by field name; the others keep the paper's
    # values. Numbers and switches, as the options give them (a float field takes an int).
    method_args: dict[str, float | int | bool | None] = field(default_factory=dict)
    seed: int = 0
    device: str | None = None
    compile: bool = False
    sync_bn: bool = False  # under torchrun: BatchNorm statistics over the global batch instead of each rank's shard
    dist_backend: str | None = None  # under torchrun: "nccl" or "gloo" [default: nccl on CUDA, gloo on the CPU]
    select_on: str = "val"  # "test" mimics the papers (it leaks; opt-in only)
    eval_every: int = 1
    eval_n: int | None = None  # [default: 1000 on CUDA, 500 on the CPU, at most the split's size]
    val_size: float = 0.1  # fraction of the training data held out (at least min(500, 20%) images)
    out: str | None = None  # the run directory [default: runs/<method>-<student>-<data>-<timestamp>]
    resume: str | None = None  # a run directory to continue

    @property
    def generated_fraction(self) -> float | None:
        """The generated share of every batch: extra_fraction, 0.7 when extra data is given without it; None without
        extra data."""
        if self.extra_data is None:
            return None
        return DEFAULT_EXTRA_FRACTION if self.extra_fraction is None else self.extra_fraction

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "milestones": list(self.milestones) if self.milestones is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if values.get("milestones") is not None:
            values["milestones"] = tuple(values["milestones"])
        return cls(**values)

    def validate(self) -> None:
        """Refuse values no run can use, before anything is loaded."""
        if self.select_on not in SELECT_ON:
            raise RdistError(f"select_on must be one of {', '.join(SELECT_ON)}, got '{self.select_on}'")
        positive = {"epochs": self.epochs, "max_steps": self.max_steps, "batch_size": self.batch_size,
                    "eval_every": self.eval_every, "eval_n": self.eval_n}
        for name, value in positive.items():
            if value is not None and value < 1:
                raise RdistError(f"--{name.replace('_', '-')} must be a positive integer, got {value}")
        if self.lr is not None and not self.lr > 0:
            raise RdistError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise RdistError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.attack_steps is not None and self.attack_steps < 0:
            raise RdistError(f"--steps (attack steps) must be >= 0, got {self.attack_steps}")
        if self.swa_start is not None and self.swa_start < 1:
            raise RdistError(f"--swa-start must be a positive epoch, got {self.swa_start}")
        if not 0 < self.val_size < 1:
            raise RdistError(f"--val-size is a fraction of the training data in (0, 1), got {self.val_size}")
        if self.norm not in ("Linf", "L2"):
            raise RdistError(f"--norm must be Linf or L2, got '{self.norm}'")
        if self.norm != "Linf" and (self.eps is None or self.step_size is None):
            raise RdistError(f"--norm {self.norm} needs --eps and --step-size (the defaults, 8/255 and 2/255, are "
                             "L-inf budgets): e.g. --eps 0.5 --step-size 0.1")
        self._validate_recipe_options()

    def _validate_recipe_options(self) -> None:
        """The weight average, the lr schedule and the generated data."""
        if self.ema is not None and not 0 < self.ema < 1:
            raise RdistError(f"--ema is the decay of the moving average, in (0, 1) (the recipes use 0.995), got "
                             f"{self.ema}")
        if self.ema is not None and self.swa_start is not None:
            raise RdistError("--ema and --swa-start each choose the weight average that is evaluated and saved; "
                             "give one of them")
        if self.lr_schedule is not None and self.lr_schedule not in LR_SCHEDULES:
            raise unknown("--schedule", self.lr_schedule, LR_SCHEDULES)
        if self.warmup_epochs is not None and self.warmup_epochs < 0:
            raise RdistError(f"--warmup-epochs must be >= 0, got {self.warmup_epochs}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise RdistError(f"--label-smoothing must be in [0, 1) (the recipes use 0.1), got {self.label_smoothing}")
        if self.extra_fraction is not None:
            if self.extra_data is None:
                raise RdistError("--extra-fraction is the share of generated images in a batch: give the images "
                                 "with --extra-data SOURCE")
            if not 0 <= self.extra_fraction < 1:
                raise RdistError(f"--extra-fraction must be in [0, 1) (every batch keeps real images; the recipes "
                                 f"use {DEFAULT_EXTRA_FRACTION}), got {self.extra_fraction}")

    def with_absolute_paths(self) -> "TrainConfig":
        """Teacher files, npz data and directories as absolute paths, so a resume from elsewhere finds them
        and compares equal."""

        def absolute(spec: str | None) -> str | None:
            if spec is None or not Path(spec).expanduser().exists():
                return spec
            return str(Path(spec).expanduser().resolve())

        data = self.data
        if data is not None and data.startswith("npz:"):
            data = "npz:" + (absolute(data[4:]) or data[4:])
        extra = self.extra_data
        if extra is not None:  # each local part; hf:// and https:// names stay
            extra = ",".join(absolute(part.strip()) or part.strip() for part in extra.split(","))
        return replace(self, teachers={role: absolute(spec) for role, spec in self.teachers.items()}, data=data,
                       extra_data=extra, initial_weights=absolute(self.initial_weights),
                       data_dir=str(Path(self.data_dir).expanduser().resolve()) if self.data_dir else None,
                       companions={role: absolute(spec) for role, spec in self.companions.items()},
                       out=str(Path(self.out).resolve()) if self.out else None,
                       resume=str(Path(self.resume).resolve()) if self.resume else None)


def fill_paper_defaults(config: TrainConfig) -> tuple[TrainConfig, list[Default]]:
    """`config` with its method's canonical name and what the method's paper fills in where a new run left it out
    (`rdist.methods.paper_defaults`: data, recipe, teachers), and the list of what was filled in."""
    values, filled = paper_defaults(config.method, data=config.data, recipe=config.recipe, epochs=config.epochs,
                                    teachers=config.teachers, resuming=bool(config.resume))
    return replace(config, **values), filled
