"""zoo.yaml: the catalogue of published students (`ZOO`), checked field by field.

Each entry of `students:` names one file on the Hugging Face Hub, pinned to a commit and a sha256,
with what it is (arch, dataset, method, teacher) and what it measured (clean, pgd20, aa accuracy in
percent) by which command. The loader refuses an entry that lacks a field, naming entry and field.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import Field
from typing_extensions import TypedDict

from rdist.catalogues import Catalogue, Entry, Name, Percent, Text

METRICS = ("clean", "pgd20", "aa")
FIELD_PATTERNS = {
    "name": (re.compile(r"[\w.+-]+"), "one word of letters, digits and . _ + - (it is typed after zoo:)"),
    "repo": (re.compile(r"[\w.-]+/[\w.-]+"), "a Hub repo id ORG/NAME"),
    "revision": (re.compile(r"[0-9a-f]{40}"), "a full 40-character commit hash (a branch name can move)"),
    "sha256": (re.compile(r"[0-9a-f]{64}"), "64 lowercase hex characters"),
}


def _matching(field: str):
    pattern, meaning = FIELD_PATTERNS[field]
    return Annotated[str, Field(pattern=f"^(?:{pattern.pattern})$", description=meaning)]


class Results(TypedDict):
    """Accuracy in percent on the test set."""

    clean: Percent
    pgd20: Percent
    aa: Percent


class ZooEntry(Entry):
    """A published student: every field is required."""

    name: Annotated[Name, Field(description=FIELD_PATTERNS["name"][1])]
    repo: _matching("repo")
    file: Annotated[Text, Field(description="the rdist artifact in that repo, e.g. model.safetensors")]
    revision: _matching("revision")
    sha256: _matching("sha256")
    arch: Annotated[Text, Field(description="the rdist architecture, e.g. resnet18")]
    dataset: Annotated[Text, Field(description="the dataset, e.g. cifar10")]
    method: Annotated[Text, Field(description="the distillation method, e.g. rslad")]
    teacher: Annotated[Text, Field(description="a RobustBench name, zoo:NAME, or a description")]
    results: Annotated[Results, Field(description="a mapping of clean, pgd20 and aa to accuracies in percent "
                                                  "(0-100) on the test set")]
    command: Annotated[Text, Field(description="the `rdist attack` command that measured the results")]


ZOO = Catalogue("zoo", "zoo.yaml", "students", ZooEntry, env="RDIST_ZOO", option="--zoo", noun="zoo model",
                listing="`rdist zoo list`")
