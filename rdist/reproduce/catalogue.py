"""reproductions.yaml: the paper table rows rdist stands behind, loaded and checked field by field.

Each entry names what to train (teacher, method, student, dataset, recipe, checkpoint selection, other
training options), how to measure it (clean, PGD-20 and an AutoAttack column on the first n test images)
and what the paper printed, with where. The loader refuses an entry with a missing or unknown field,
naming the entry and the field; `check_entry` also resolves its names (teacher in the catalogue, method,
architecture, dataset), which needs no download.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rdist.engine import TrainConfig
from rdist.engine.config import SELECT_ON
from rdist.errors import RdistError
from rdist.catalogues import catalogue_file, load_catalogue
from rdist.utils import parse_eps, suggest

METRICS = ("clean", "pgd20", "aa")
NAME = re.compile(r"[\w.+-]+")
# TrainConfig fields an entry sets through its own keys, or that belong to one invocation, not the row.
_NOT_OPTIONS = {"method", "student", "data", "teachers", "recipe", "select_on", "seed", "out", "resume", "device",
                "compile", "max_steps"}
OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name not in _NOT_OPTIONS)
_EPS_OPTIONS = ("eps", "step_size")
ENTRY_FIELDS = ("name", "teacher", "method", "student", "dataset", "recipe", "select_on", "options", "evaluation",
                "published", "source")
_REQUIRED = ("name", "method", "student", "dataset", "select_on", "evaluation", "published", "source")


@dataclass(frozen=True)
class TeacherStage:
    """A teacher trained first, by `rdist teacher train --method METHOD --arch ARCH` with `options`."""

    method: str
    arch: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Evaluation:
    n: int
    eps: float
    eps_text: str
    aa: str  # the attack of the AutoAttack column: aa, or a subset such as aa:apgd-ce+apgd-t

    @property
    def attacks(self) -> list[str]:
        return ["clean", "pgd20", self.aa]


@dataclass(frozen=True)
class Reproduction:
    name: str
    teacher: str | TeacherStage | None  # a RobustBench name, a stage, or None for methods without a teacher
    method: str
    student: str
    dataset: str
    recipe: str | None
    select_on: str
    options: dict[str, Any]
    evaluation: Evaluation
    published: dict[str, float | None]  # percent; None where the paper's number was not checked
    source: dict[str, str]

    @property
    def teacher_label(self) -> str:
        if isinstance(self.teacher, TeacherStage):
            return f"{self.teacher.method} {self.teacher.arch} (trained)"
        return self.teacher or "-"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reproductions_path(explicit: str | Path | None = None) -> Path:
    """The catalogue to read: `--catalogue PATH`, else $RDIST_REPRODUCTIONS, else the project's file."""
    return catalogue_file(explicit, "RDIST_REPRODUCTIONS", "reproductions.yaml")


def load_reproductions(path: str | Path | None = None) -> list[Reproduction]:
    return load_catalogue("reproductions", reproductions_path(path), "reproductions", _entry,
                          "pass --catalogue PATH or set RDIST_REPRODUCTIONS to a reproductions.yaml")


def find_reproduction(entries: list[Reproduction], name: str) -> Reproduction:
    for entry in entries:
        if entry.name == name:
            return entry
    raise RdistError(f"unknown reproduction '{name}'{suggest(name, [e.name for e in entries])}; "
                     "`rdist reproduce --list` shows them")


def check_entry(entry: Reproduction) -> None:
    """Resolve every name of `entry` without downloading anything: RdistError for the first that fails."""
    from rdist.data import dataset_shape
    from rdist.methods import ROBUST, method_class
    from rdist.models import create_model
    from rdist.teachers.catalogue import find_teacher

    where = f"reproduction '{entry.name}'"
    try:
        channels, classes, _ = dataset_shape(entry.dataset)
        method = method_class(entry.method)
        create_model(entry.student, num_classes=classes, in_channels=channels)
        if isinstance(entry.teacher, TeacherStage):
            teacher_method = method_class(entry.teacher.method)
            if teacher_method.kind != "teacher":
                raise RdistError(f"teacher stage method {entry.teacher.method} is not a teacher training method")
            create_model(entry.teacher.arch, num_classes=classes, in_channels=channels)
        elif entry.teacher is not None:
            find_teacher(entry.teacher, entry.dataset)
    except RdistError as exc:
        raise RdistError(f"{where}: {exc}") from None
    if (ROBUST in method.teachers) != (entry.teacher is not None):
        raise RdistError(f"{where}: {entry.method} {'needs' if ROBUST in method.teachers else 'takes no'} teacher")
    others = [role for role in method.teachers if role != ROBUST]
    if others:
        raise RdistError(f"{where}: {entry.method} needs a {others[0]} teacher as well, which reproductions do not "
                         "train yet")


def _entry(raw: object, where: str) -> Reproduction:
    if not isinstance(raw, dict):
        raise RdistError(f"{where} is not a mapping of fields ({', '.join(ENTRY_FIELDS)})")
    if isinstance(raw.get("name"), str):
        where = f"{where} ('{raw['name']}')"
    extra = sorted(set(raw) - set(ENTRY_FIELDS), key=str)
    if extra:
        raise RdistError(f"{where} has unknown field '{extra[0]}'{suggest(str(extra[0]), ENTRY_FIELDS)}")
    for name in _REQUIRED:
        if raw.get(name) in (None, ""):
            raise RdistError(f"{where} is missing field '{name}'")
    for name in ("name", "method", "student", "dataset"):
        if not isinstance(raw[name], str):
            raise RdistError(f"{where}: field '{name}' must be text, got {raw[name]!r}")
    if not NAME.fullmatch(raw["name"]):
        raise RdistError(f"{where}: field 'name' must be one word of letters, digits and . _ + -")
    if raw["select_on"] not in SELECT_ON:
        raise RdistError(f"{where}: field 'select_on' must be one of {', '.join(SELECT_ON)}, got {raw['select_on']!r}")
    if raw.get("recipe") not in (None, "paper"):
        raise RdistError(f"{where}: field 'recipe' must be 'paper' or absent, got {raw['recipe']!r}")
    return Reproduction(name=raw["name"], teacher=_teacher(raw.get("teacher"), where), method=raw["method"],
                        student=raw["student"], dataset=raw["dataset"], recipe=raw.get("recipe"),
                        select_on=raw["select_on"], options=_options(raw.get("options"), f"{where}: options"),
                        evaluation=_evaluation(raw["evaluation"], where), published=_published(raw["published"], where),
                        source=_source(raw["source"], where))


def _teacher(raw: object, where: str) -> str | TeacherStage | None:
    if raw is None or isinstance(raw, str):
        return raw
    if not isinstance(raw, dict) or not isinstance(raw.get("method"), str) or not isinstance(raw.get("arch"), str):
        raise RdistError(f"{where}: field 'teacher' must be a RobustBench name or a stage "
                         "{method: ..., arch: ..., options: {...}}")
    extra = sorted(set(raw) - {"method", "arch", "options"}, key=str)
    if extra:
        raise RdistError(f"{where}: field 'teacher' has unknown key '{extra[0]}' (a stage has method, arch, options)")
    return TeacherStage(raw["method"], raw["arch"], _options(raw.get("options"), f"{where}: teacher options"))


def _options(raw: object, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RdistError(f"{where} must be a mapping of training options ({', '.join(OPTIONS)})")
    unknown = sorted(set(raw) - set(OPTIONS), key=str)
    if unknown:
        raise RdistError(f"{where} has unknown option '{unknown[0]}'{suggest(str(unknown[0]), OPTIONS)}")
    options = dict(raw)
    for name in _EPS_OPTIONS:
        if name in options:
            options[name] = parse_eps(options[name])
    try:
        TrainConfig(method="sat", student="tinycnn", **options).validate()
    except (RdistError, TypeError) as exc:
        raise RdistError(f"{where}: {exc}") from None
    return options


def _evaluation(raw: object, where: str) -> Evaluation:
    if not isinstance(raw, dict) or set(raw) - {"n", "eps", "aa"} or not {"n", "eps"} <= set(raw):
        raise RdistError(f"{where}: field 'evaluation' must be {{n: IMAGES, eps: 8/255, aa: aa}}")
    n, aa = raw["n"], raw.get("aa", "aa")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RdistError(f"{where}: evaluation n must be a positive number of test images, got {n!r}")
    if not isinstance(aa, str) or not (aa == "aa" or aa.startswith("aa")):
        raise RdistError(f"{where}: evaluation aa must name an AutoAttack attack (aa, aa:apgd-ce+apgd-t), got {aa!r}")
    eps = parse_eps(str(raw["eps"]))
    return Evaluation(n=n, eps=eps, eps_text=str(raw["eps"]), aa=aa)


def _published(raw: object, where: str) -> dict[str, float | None]:
    if not isinstance(raw, dict) or set(raw) - set(METRICS):
        raise RdistError(f"{where}: field 'published' must map {', '.join(METRICS)} to accuracies in percent")
    published: dict[str, float | None] = {}
    for metric in METRICS:
        value = raw.get(metric)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 <= value <= 100):
            raise RdistError(f"{where}: published {metric} must be an accuracy in percent (0-100), got {value!r}")
        published[metric] = float(value) if value is not None else None
    if published["aa"] is None:
        raise RdistError(f"{where} is missing field 'published.aa' (the AutoAttack accuracy the row is about)")
    return published


def _source(raw: object, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not all(isinstance(raw.get(k), str) and raw[k] for k in ("paper", "table")):
        raise RdistError(f"{where}: field 'source' must give the paper and the table the numbers come from "
                         "({paper: ..., table: ..., url: ...})")
    extra = sorted(set(raw) - {"paper", "table", "url"}, key=str)
    if extra:
        raise RdistError(f"{where}: field 'source' has unknown key '{extra[0]}' (paper, table, url)")
    return {k: str(v) for k, v in raw.items()}
