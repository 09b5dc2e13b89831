"""The papers' choices for what a run leaves out: `rdist distill --method iad --student mobilenetv2` trains IAD-I as
its paper does, on its paper's data, with its paper's teacher, for its paper's epochs; and the tables that show
those choices (`rdist distill --list`, the notes of the CLI's help).

Every value filled in is returned as a `Default`, so that the caller can show it (the CLI prints them in one
header line before anything is loaded); an explicit value always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rdist.methods.registry import aliases, canonical_method, list_methods, method_class, parse
from rdist.methods.roles import role

PAPER_DATA = "cifar10"  # every method's paper reports CIFAR-10 first
# Where the CLI's help looks for the values a paper preset changes: the datasets and architectures papers train on.
PRESET_DATASETS, PRESET_ARCHS = ("cifar10", "cifar100"), ("resnet18", "mobilenetv2", "wrn-34-10")


@dataclass(frozen=True)
class Default:
    option: str  # the CLI option it stands for: "--data"
    value: str
    why: str  # "the IAD paper's teacher, TRADES WRN-34-10"

    def __str__(self) -> str:
        return f"{self.option} {self.value} ({self.why})"


def paper_defaults(method: str, *, data: str | None, recipe: str | None, epochs: int | None,
                   teachers: dict[str, str], resuming: bool) -> tuple[dict[str, Any], list[Default]]:
    """The run settings that `method`'s paper fills in: the canonical method name and, for a new distillation run,
    the paper's data, recipe and teachers wherever they were left out (None); and the list of what was filled.

    A resumed run keeps its own settings. Teacher training keeps asking for `--epochs` or `--recipe paper`,
    since a teacher's full recipe is hours of a large model: nothing a user should get by omission.
    """
    name = canonical_method(method)
    filled = [Default("--method", f"{method} = {name}", "the paper's name")] if name != method else []
    cls, (base, term) = method_class(name), parse(name)
    if resuming or cls.kind != "distill":
        return {"method": name, "data": data or PAPER_DATA}, filled
    values: dict[str, Any] = {"method": name, "data": data or PAPER_DATA, "recipe": recipe}
    if data is None:
        filled.append(Default("--data", PAPER_DATA, "the papers' dataset"))
    if recipe is None and epochs is None:
        values["recipe"] = "paper"
        whose = term.term if term is not None and term.term_recipe else base.name
        filled.append(Default("--recipe", "paper", f"the {whose} paper's schedule; --epochs N for a short run"))
    chosen = dict(teachers)
    for name_of_role, choices in cls.paper_teachers.items():
        if name_of_role in cls.teachers and chosen.get(name_of_role) is None and values["data"] in choices:
            chosen[name_of_role] = choices[values["data"]]
            whose = term.term if term is not None and name_of_role in term.paper_teachers else base.name
            why = f"the {whose} paper's {role(name_of_role).noun}, pulled from RobustBench"
            filled.append(Default(*role(name_of_role).given(chosen[name_of_role]), why))
    return {**values, "teachers": chosen}, filled


def missing_teacher_hint(method: str, data: str, role_name: str) -> str:
    """Why no `role_name` teacher was filled in for `method` on `data`, for the error that asks for one."""
    choices, wanted = method_class(method).paper_teachers.get(role_name, {}), role(role_name)
    if not choices:
        return f"{method}'s paper names no RobustBench {wanted.noun} to default to"
    if not wanted.papers_own:
        return f"RobustBench has no {wanted.adjective} {data} model (it has one for {', '.join(sorted(choices))})"
    return f"{method}'s paper {wanted.noun} is known for {', '.join(sorted(choices))}, not {data}"


def method_rows(data: str = PAPER_DATA) -> list[dict[str, str | None]]:
    """One row per distillation method (with its aliases) for `rdist distill --list`: its paper, inner attack,
    outer loss, the teachers it defaults to on `data`, its paper recipe there (for a ResNet-18 student), the
    links to its paper and its official code, a note where the method has one, and the roles of its teachers and of
    the networks it trains beside the student (PeerAiD: no teacher, a peer)."""
    rows = []
    for name in list_methods("distill"):
        cls = method_class(name)
        about, recipe = cls.about, cls.paper_preset(data, "resnet18")[0]
        schedule = (f"{recipe.epochs} ep, x0.1 at {'/'.join(map(str, recipe.milestones))}, "
                    f"wd {recipe.weight_decay:.0e}".replace("e-0", "e-"))
        # The first role's teacher (the robust one), then the others', each "(role: none)" where unknown.
        first, *others = [cls.paper_teachers.get(r, {}).get(data) or f"({r}: none)" for r in cls.teachers] or [None]
        teacher = " + ".join([first, *others]) if first and not first.startswith("(") else None
        rows.append({"method": name, "aliases": ", ".join(a for a, n in aliases().items() if n == name) or None,
                     "paper": about.paper, "attack": about.attack, "loss": about.loss, "teacher": teacher,
                     "recipe": schedule + (f", SWA from {recipe.swa_start}" if recipe.swa_start else ""),
                     "url": about.url, "code": about.code, "note": about.note, "teachers": list(cls.teachers),
                     "companions": list(cls.companions)})
    return rows


def preset_notes(hparam: str, kind: str) -> list[str]:
    """'adaad 1 on cifar100', 'mart 5 except on wrn-34-10': where `--recipe paper` sets `hparam` of a method of
    `kind` to another value than the method's default, on the datasets and architectures papers train on."""
    notes = []
    for name in list_methods(kind):
        cls = method_class(name)
        default = cls.defaults().get(hparam)
        changed: dict[Any, list[tuple[str, str]]] = {}
        for data in PRESET_DATASETS:
            for arch in PRESET_ARCHS:
                value = cls.paper_preset(data, arch)[1].get(hparam, default)
                if value != default:
                    changed.setdefault(value, []).append((data, arch))
        for value, where in changed.items():
            notes.append(f"{name} {value:g}{_where(where)}")
    return notes


def _where(where: list[tuple[str, str]]) -> str:
    """' on cifar100', ' except on wrn-34-10', '': the probed settings `where` as few words as say them."""
    datasets, archs = sorted({d for d, _ in where}), sorted({a for _, a in where})
    if len(where) == len(PRESET_DATASETS) * len(PRESET_ARCHS):
        return ""
    if len(where) == len(datasets) * len(PRESET_ARCHS):
        return f" on {', '.join(datasets)}"
    if len(where) == len(archs) * len(PRESET_DATASETS):
        others = [a for a in PRESET_ARCHS if a not in archs]
        return f" except on {', '.join(others)}" if len(others) < len(archs) else f" on {', '.join(archs)}"
    return " on " + ", ".join(f"{a} ({d})" for d, a in where)
