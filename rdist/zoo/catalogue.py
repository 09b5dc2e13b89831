"""zoo.yaml: the catalogue of published students, loaded and checked field by field.

Each entry of `students:` names one file on the Hugging Face Hub, pinned to a commit and a sha256,
with what it is (arch, dataset, method, teacher) and what it measured (clean, pgd20, aa accuracy in
percent) by which command. The loader refuses an entry that lacks a field, naming entry and field.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path


from rdist.errors import RdistError
from rdist.catalogues import catalogue_file, load_catalogue
from rdist.utils import suggest

METRICS = ("clean", "pgd20", "aa")
FIELDS = ("name", "repo", "file", "revision", "sha256", "arch", "dataset", "method", "teacher", "results", "command")
_TEXT_FIELDS = ("name", "file", "arch", "dataset", "method", "teacher", "command")
FIELD_PATTERNS = {
    "name": (re.compile(r"[\w.+-]+"), "one word of letters, digits and . _ + - (it is typed after zoo:)"),
    "repo": (re.compile(r"[\w.-]+/[\w.-]+"), "a Hub repo id ORG/NAME"),
    "revision": (re.compile(r"[0-9a-f]{40}"), "a full 40-character commit hash (a branch name can move)"),
    "sha256": (re.compile(r"[0-9a-f]{64}"), "64 lowercase hex characters"),
}


@dataclass(frozen=True)
class ZooEntry:
    name: str
    repo: str
    file: str
    revision: str
    sha256: str
    arch: str
    dataset: str
    method: str
    teacher: str
    results: dict[str, float]
    command: str

    def to_dict(self) -> dict:
        return asdict(self)


def zoo_path(explicit: str | Path | None = None) -> Path:
    """The catalogue to read: `--zoo PATH`, else $RDIST_ZOO, else the project's zoo.yaml."""
    return catalogue_file(explicit, "RDIST_ZOO", "zoo.yaml")


def load_zoo(path: str | Path | None = None) -> list[ZooEntry]:
    """Every student of the catalogue at `path` (see `zoo_path`), validated."""
    return load_catalogue("zoo", zoo_path(path), "students", _entry,
                          "pass --zoo PATH or set RDIST_ZOO to a zoo.yaml")


def find_student(entries: list[ZooEntry], name: str, path: Path) -> ZooEntry:
    for entry in entries:
        if entry.name == name:
            return entry
    if not entries:
        raise RdistError(f"zoo model '{name}' not found: {path} lists no published students yet")
    raise RdistError(f"unknown zoo model '{name}'{suggest(name, [e.name for e in entries])}; "
                     "`rdist zoo list` shows them")


def _entry(raw: object, where: str) -> ZooEntry:
    if not isinstance(raw, dict):
        raise RdistError(f"{where} is not a mapping of fields ({', '.join(FIELDS)})")
    if isinstance(raw.get("name"), str):
        where = f"{where} ('{raw['name']}')"
    for field in FIELDS:
        if raw.get(field) in (None, ""):
            raise RdistError(f"{where} is missing field '{field}'")
    extra = sorted(set(raw) - set(FIELDS))
    if extra:
        raise RdistError(f"{where} has unknown field '{extra[0]}'{suggest(str(extra[0]), FIELDS)}")
    for field in _TEXT_FIELDS:
        if not isinstance(raw[field], str):
            raise RdistError(f"{where}: field '{field}' must be text, got {raw[field]!r}")
    for field, (pattern, meaning) in FIELD_PATTERNS.items():
        if not isinstance(raw[field], str) or not pattern.fullmatch(raw[field]):
            raise RdistError(f"{where}: field '{field}' must be {meaning}, got {raw[field]!r}")
    return ZooEntry(**{**raw, "results": _results(raw["results"], where)})


def _results(raw: object, where: str) -> dict[str, float]:
    if not isinstance(raw, dict):
        raise RdistError(f"{where}: field 'results' must map {', '.join(METRICS)} to accuracies in percent")
    results = {}
    for metric in METRICS:
        value = raw.get(metric)
        if value is None:
            raise RdistError(f"{where} is missing field 'results.{metric}'")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
            raise RdistError(f"{where}: field 'results.{metric}' must be an accuracy in percent (0-100), "
                             f"got {value!r}")
        results[metric] = float(value)
    extra = sorted(set(raw) - set(METRICS))
    if extra:
        raise RdistError(f"{where} has unknown field 'results.{extra[0]}' (results are {', '.join(METRICS)})")
    return results
