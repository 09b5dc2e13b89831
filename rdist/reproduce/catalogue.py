"""reproductions.yaml: the paper table rows rdist stands behind, loaded and checked field by field.

Each entry names what to train (teacher, method, student, dataset, recipe, checkpoint selection, other
training options), how to measure it (clean, PGD-20 and an AutoAttack column on the first n test images)
and what the paper printed, with where. The loader refuses an entry with a missing or unknown field,
naming the entry and the field; `check_entry` also resolves its names (teacher in the catalogue, method,
architecture, dataset), which needs no download.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any, Literal, Optional, get_type_hints

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, WithJsonSchema, \
    computed_field
from typing_extensions import NotRequired, TypedDict

from rdist.catalogues import Catalogue, Entry, Name, Percent, Text
from rdist.engine import TrainConfig
from rdist.engine.config import SELECT_ON
from rdist.errors import RdistError
from rdist.utils import field_comments, parse_eps, suggest

METRICS = ("clean", "pgd20", "aa")
# TrainConfig fields an entry sets through its own keys, or that belong to one invocation, not the row.
_NOT_OPTIONS = {"method", "student", "data", "teachers", "recipe", "select_on", "seed", "out", "resume", "device",
                "compile", "max_steps"}
OPTIONS = tuple(f.name for f in fields(TrainConfig) if f.name not in _NOT_OPTIONS)
_EPS_OPTIONS = ("eps", "step_size")
_EPS_SCHEMA = {"anyOf": [{"type": "string"}, {"type": "number"}], "description": "in [0,1] pixel units: 8/255 or 0.031"}


def _eps(text: Any) -> float:
    try:
        return parse_eps(text if isinstance(text, (int, float)) and not isinstance(text, bool) else str(text))
    except RdistError as exc:
        raise ValueError(str(exc)) from None


def _eps_text(text: str) -> str:
    _eps(text)  # refused when it is no budget; kept as written, for display
    return text


def _options(raw: dict[str, Any]) -> dict[str, Any]:
    """Training options as TrainConfig takes them: only TrainConfig's fields, eps values parsed, values a run can use."""
    unknown = sorted(set(raw) - set(OPTIONS), key=str)
    if unknown:
        raise ValueError(f"unknown option '{unknown[0]}'{suggest(str(unknown[0]), OPTIONS)}")
    options = {k: _eps(v) if k in _EPS_OPTIONS else v for k, v in raw.items()}
    try:
        TrainConfig(method="sat", student="tinycnn", **options).validate()
    except (RdistError, TypeError) as exc:
        raise ValueError(str(exc)) from None
    return options


def _options_schema() -> dict[str, Any]:
    """What an editor offers for `options`: every option with its TrainConfig type."""
    hints, described = get_type_hints(TrainConfig), field_comments(TrainConfig)
    properties = {name: _EPS_SCHEMA if name in _EPS_OPTIONS else
                  {**TypeAdapter(Optional[hints[name]]).json_schema(),
                   **({"description": described[name]} if name in described else {})}
                  for name in OPTIONS}
    return {"type": "object", "properties": properties, "additionalProperties": False,
            "description": "a mapping of training options, TrainConfig's fields (epochs, eps, eval_n, ...)"}


Options = Annotated[dict[str, Any], AfterValidator(_options), WithJsonSchema(_options_schema())]


class TeacherStage(BaseModel):
    """A teacher trained first, by `rdist teacher train --method METHOD --arch ARCH` with `options`."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    method: Annotated[Text, Field(description="a teacher training method (`rdist teacher train --method`)")]
    arch: Annotated[Text, Field(description="the teacher's architecture")]
    options: Options = {}


class Evaluation(BaseModel):
    """clean, pgd20 and the AutoAttack column on the first n test images."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    n: Annotated[int, Field(ge=1, description="a positive number of test images")]
    eps_text: Annotated[str, BeforeValidator(lambda v: v if isinstance(v, str) else str(v)),
                        AfterValidator(_eps_text), WithJsonSchema(_EPS_SCHEMA)] = Field(alias="eps")
    aa: Annotated[str, Field(pattern=r"^aa", description="an AutoAttack attack: aa, or a subset such as "
                                                         "aa:apgd-ce+apgd-t")] = "aa"

    @computed_field
    @property
    def eps(self) -> float:
        return _eps(self.eps_text)

    @property
    def attacks(self) -> list[str]:
        return ["clean", "pgd20", self.aa]


class Published(TypedDict):
    """The paper's accuracies in percent; aa (the AutoAttack accuracy the row is about) is required."""

    clean: NotRequired[Percent]
    pgd20: NotRequired[Percent]
    aa: Percent


class Source(TypedDict):
    """Where the published numbers are printed."""

    paper: Text
    table: Text
    url: NotRequired[str]


class Reproduction(Entry):
    """A paper's table row: what to train, how to measure it and what the paper printed."""

    name: Annotated[Name, Field(description="one word of letters, digits and . _ + - (what users type after "
                                            "`rdist reproduce`)")]
    teacher: Annotated[Optional[str | TeacherStage],
                       Field(description="a RobustBench name of `rdist teacher list` (pulled), or a training stage "
                                         "{method, arch, options} run first; absent for methods without a teacher")] \
        = None
    natural_teacher: Annotated[Optional[str],
                               Field(description="a RobustBench name of `rdist teacher list` (pulled): the naturally "
                                                 "trained teacher of the methods that take one (mtard, bmtard)")] = None
    method: Annotated[Text, Field(description="a training method, as `rdist distill --method` or `rdist teacher "
                                              "train --method` takes it")]
    student: Annotated[Text, Field(description="an architecture, as `rdist distill --student` takes it")]
    dataset: Annotated[Text, Field(description="a dataset, as `--data` takes it")]
    recipe: Annotated[Optional[Literal["paper"]], Field(description="'paper' or absent")] = None
    select_on: Annotated[Literal[SELECT_ON], Field(description=f"one of {', '.join(SELECT_ON)}: the checkpoint "
                                                               "selection (test mimics the papers)")]
    options: Options = {}  # for every training stage
    evaluation: Annotated[Evaluation, Field(description="a mapping {n: IMAGES, eps: 8/255, aa: aa}")]
    # None where the paper's number was not checked
    published: Annotated[Published, AfterValidator(lambda p: {m: p.get(m) for m in METRICS}),
                         Field(description="a mapping of clean, pgd20 and aa (required) to the paper's accuracies in "
                                           "percent")]
    source: Annotated[Source, Field(description="a mapping {paper, table, url}: where the numbers are printed")]

    @property
    def teacher_label(self) -> str:
        if isinstance(self.teacher, TeacherStage):
            label = f"{self.teacher.method} {self.teacher.arch} (trained)"
        else:
            label = self.teacher or "-"
        return label + (f" + {self.natural_teacher}" if self.natural_teacher else "")


REPRODUCTIONS = Catalogue("reproductions", "reproductions.yaml", "reproductions", Reproduction,
                          env="RDIST_REPRODUCTIONS", option="--catalogue", noun="reproduction",
                          listing="`rdist reproduce --list`")


def check_entry(entry: Reproduction) -> None:
    """Resolve every name of `entry` without downloading anything: RdistError for the first that fails."""
    from rdist.data import dataset_shape
    from rdist.methods import NATURAL, ROBUST, method_class
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
        if entry.natural_teacher is not None:
            find_teacher(entry.natural_teacher, entry.dataset)
    except RdistError as exc:
        raise RdistError(f"{where}: {exc}") from None
    if (ROBUST in method.teachers) != (entry.teacher is not None):
        raise RdistError(f"{where}: {entry.method} {'needs' if ROBUST in method.teachers else 'takes no'} teacher")
    if (NATURAL in method.teachers) != (entry.natural_teacher is not None):
        raise RdistError(f"{where}: {entry.method} "
                         f"{'needs a natural_teacher' if NATURAL in method.teachers else 'takes no natural_teacher'}")
    others = [role for role in method.teachers if role not in (ROBUST, NATURAL)]
    if others:
        raise RdistError(f"{where}: {entry.method} needs a {others[0]} teacher as well, which reproductions do not "
                         "train yet")
