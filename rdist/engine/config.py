"""What a training run is: every choice the user makes, in one dataclass that the checkpoint stores."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rdist.errors import RdistError
from rdist.methods import NATURAL, ROBUST

SELECT_ON = ("val", "test")


@dataclass
class TrainConfig:
    """One training run. `None` means "the method's paper value" (hparams) or "the default" (schedule, attack).

    Left-out fields a distillation paper fixes (data, the recipe when `epochs` is not given either, the teachers)
    take that paper's values when the run is built (`rdist.engine.defaults.resolve_defaults`); `method` may be
    an alias (`iad`, `igdm`), recorded under its canonical name. `teachers` names one model per role the method
    declares (`Method.teachers`: "robust", and "natural" for AKD2 and IAD-II), in any form `rdist.resolve` takes.

    Without `recipe="paper"` the schedule is short-run friendly: the given `epochs`, lr 0.1, batch 128,
    the method's weight decay, lr x0.1 at 50% and 75% of the epochs, and the attack is 10 steps of 2/255 within
    8/255. With it, the method's paper recipe, attack included (TRADES and MART: 0.031, 0.007); fields given
    explicitly still override it (a paper recipe run for fewer epochs scales its milestones). `build_run`
    stores the resolved attack back, so a run's checkpoint and provenance hold concrete values.
    """

    method: str
    student: str
    data: str | None = None  # [default: cifar10]
    # role -> any model name: a path, zoo:NAME, a RobustBench name, hf-hub:ORG/REPO[@REV]
    teachers: dict[str, str] = field(default_factory=dict)
    recipe: str | None = None  # "paper" or None
    epochs: int | None = None
    milestones: tuple[int, ...] | None = None
    lr: float | None = None
    weight_decay: float | None = None
    batch_size: int | None = None
    swa_start: int | None = None
    max_steps: int | None = None  # stop after this many optimiser steps in all (short runs); still saves
    eps: float | None = None  # L-inf budget of the training attack and of the evaluation
    step_size: float | None = None
    attack_steps: int | None = None
    hparams: dict[str, float | int | bool | None] = field(default_factory=dict)  # alpha, beta, tau, kl_scale, igdm_alpha, ...
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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "milestones": list(self.milestones) if self.milestones is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["teachers"] = {**legacy_teachers(data), **(values.get("teachers") or {})}
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
        if not 0 < self.val_size < 1:
            raise RdistError(f"val_size is a fraction of the training data in (0, 1), got {self.val_size}")

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
        return replace(self, teachers={role: absolute(spec) for role, spec in self.teachers.items()}, data=data,
                       out=str(Path(self.out).resolve()) if self.out else None,
                       resume=str(Path(self.resume).resolve()) if self.resume else None)


def teacher_field(role: str) -> str:
    """The key that names the `role` teacher in an artifact's provenance: teacher (the robust one), natural_teacher,
    ... . Configs and identities written before teachers had roles used the same keys."""
    return "teacher" if role == ROBUST else f"{role}_teacher"


# Checkpoints and identities written before teachers had roles named their two models in fields of their own;
# they still resume.
LEGACY_TEACHER_FIELDS = {teacher_field(role): role for role in (ROBUST, NATURAL)}


def legacy_teachers(record: dict[str, Any]) -> dict[str, str]:
    """The teachers by role that a config or identity written by an earlier rdist names in its own fields."""
    return {role: record[key] for key, role in LEGACY_TEACHER_FIELDS.items() if record.get(key) is not None}


# The CLI options that name a teacher of each role; any other role is `--teacher ROLE=MODEL`.
TEACHER_OPTIONS = {ROBUST: "--teacher", NATURAL: "--natural-teacher"}


def teacher_option(role: str) -> str:
    return TEACHER_OPTIONS.get(role, f"--teacher {role}=MODEL")


def teacher_noun(role: str) -> str:
    """'teacher' (the robust one, every distillation method's), 'natural teacher', 'peer teacher', ..."""
    return "teacher" if role == ROBUST else f"{role} teacher"


def parse_hparams(values: list[str] | None, named: dict[str, float | None] | None = None) -> dict[str, Any]:
    """`--hparam NAME=VALUE` (repeatable: any hyper-parameter a method declares) merged with the named options
    (`--alpha`, ...; None = not given); a value is a number, true or false; a name given twice is refused."""
    hparams = {k: v for k, v in (named or {}).items() if v is not None}
    given = {k: f"--{k.replace('_', '-')} {v}" for k, v in hparams.items()}  # how each value was given
    for text in values or []:
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.+)", text)
        if not match:
            raise RdistError(f"cannot read --hparam '{text}': write NAME=VALUE, e.g. --hparam kl_scale=0.5")
        name, raw = match.groups()
        if name in hparams:
            raise RdistError(f"{name} is given twice ({given[name]} and --hparam {text}); give it once")
        hparams[name], given[name] = _hparam_value(raw, text), f"--hparam {text}"
    return hparams


def _hparam_value(raw: str, text: str) -> int | float | bool:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    raise RdistError(f"cannot read --hparam '{text}': the value must be a number, true or false")


def parse_teachers(values: list[str] | None, natural: str | None = None) -> dict[str, str]:
    """`--teacher MODEL` (the robust teacher), `--teacher ROLE=MODEL` (any role, repeatable) and
    `--natural-teacher MODEL` as one role -> model mapping; a role given twice is refused."""
    teachers: dict[str, str] = {}
    given = [match.groups() if (match := re.fullmatch(r"([a-z][a-z0-9_-]*)=(.+)", value)) else (ROBUST, value)
             for value in values or []]
    for role, spec in given + ([(NATURAL, natural)] if natural is not None else []):
        if role in teachers:
            raise RdistError(f"two models given for the {role} teacher ({teachers[role]} and {spec}); give one")
        teachers[role] = spec
    return teachers
