"""The paper's choices for what a run leaves out: `rdist distill --method iad --student mobilenetv2` trains IAD-I
as its paper does, on its paper's data, with its paper's teacher, for its paper's epochs.

Every value filled in is returned as a `Default`, so that the caller can show it (the CLI prints them in one
header line before anything is loaded); an explicit value always wins.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from rdist.engine.config import TEACHER_OPTIONS, TrainConfig, teacher_noun
from rdist.methods import (ALIASES, NATURAL, ROBUST, canonical_method, describe, list_methods, method_class,
                           paper_preset, paper_teachers)
from rdist.methods.registry import IGDM_SUFFIX

PAPER_DATA = "cifar10"  # every method's paper reports CIFAR-10 first


@dataclass(frozen=True)
class Default:
    option: str  # the CLI option it stands for: "--data"
    value: str
    why: str  # "the IAD paper's teacher, TRADES WRN-34-10"

    def __str__(self) -> str:
        return f"{self.option} {self.value} ({self.why})"


def resolve_defaults(config: TrainConfig) -> tuple[TrainConfig, list[Default]]:
    """`config` with its method's canonical name and, for a new distillation run, the paper's data, recipe and
    teachers wherever they were left out (None); the list says what was filled in.

    A resumed run keeps its own settings. Teacher training keeps asking for `--epochs` or `--recipe paper`,
    since a teacher's full recipe is hours of a large model: nothing a user should get by omission.
    """
    method = canonical_method(config.method)
    defaults = [Default("--method", f"{config.method} = {method}", "the paper's name")] \
        if config.method in ALIASES else []
    config = replace(config, method=method)
    cls = method_class(method)
    if config.resume or cls.kind != "distill":
        return replace(config, data=config.data or PAPER_DATA), defaults
    paper = "igdm" if method.endswith(IGDM_SUFFIX) else cls.name  # whose recipe and teacher a +igdm run takes
    values: dict[str, str] = {}
    if config.data is None:
        values["data"] = PAPER_DATA
        defaults.append(Default("--data", PAPER_DATA, "the papers' dataset"))
    data = config.data or PAPER_DATA
    if config.recipe is None and config.epochs is None:
        values["recipe"] = "paper"
        defaults.append(Default("--recipe", "paper", f"the {paper} paper's schedule; --epochs N for a short run"))
    teachers = dict(config.teachers)
    for role, choices in paper_teachers(method).items():
        if role in cls.teachers and teachers.get(role) is None and data in choices:
            teachers[role] = choices[data]
            option, value = (TEACHER_OPTIONS[role], choices[data]) if role in TEACHER_OPTIONS \
                else ("--teacher", f"{role}={choices[data]}")
            why = f"the {paper} paper's {teacher_noun(role)}, pulled from RobustBench"
            defaults.append(Default(option, value, why))
    return replace(config, **values, teachers=teachers), defaults


def missing_teacher_hint(method: str, data: str, role: str) -> str:
    """Why no `role` teacher was filled in for `method` on `data`, for the error that asks for one."""
    choices = paper_teachers(method).get(role, {})
    if role == NATURAL and choices:
        return f"RobustBench has no naturally trained {data} model (it has one for {', '.join(sorted(choices))})"
    if not choices:
        return f"{method}'s paper names no RobustBench {teacher_noun(role)} to default to"
    return f"{method}'s paper {teacher_noun(role)} is known for {', '.join(sorted(choices))}, not {data}"


def method_rows(data: str = PAPER_DATA) -> list[dict[str, str | None]]:
    """One row per distillation method (with its aliases) for `rdist distill --list`: its paper, inner attack,
    outer loss, the teacher it defaults to on `data`, and its paper recipe there (for a ResNet-18 student)."""
    rows = []
    for name in list_methods("distill"):
        about, teachers = describe(name), paper_teachers(name)
        robust, natural = teachers.get(ROBUST, {}), teachers.get(NATURAL, {})
        recipe = paper_preset(name, data, "resnet18")[0]
        schedule = (f"{recipe.epochs} ep, x0.1 at {'/'.join(map(str, recipe.milestones))}, "
                    f"wd {recipe.weight_decay:.0e}".replace("e-0", "e-"))
        teacher = robust.get(data)
        if natural and teacher:
            teacher += f" + {natural.get(data, '(natural: none)')}"
        rows.append({"method": name, "aliases": ", ".join(a for a, n in ALIASES.items() if n == name) or None,
                     "paper": about.paper, "attack": about.attack, "loss": about.loss, "teacher": teacher,
                     "recipe": schedule + (f", SWA from {recipe.swa_start}" if recipe.swa_start else "")})
    return rows
