"""The project's YAML catalogues (zoo.yaml, reproductions.yaml): one mechanism to find, read, check and search
them, and the JSON Schema editors check them with as they are typed.

An entry is a pydantic model (a subclass of `Entry`, with a `description` on every field); `Catalogue[T]` is a
file of such entries under one key. The schema is the models' own, so the checks a load makes and the ones an
editor makes are the same, and a field's description is also what its error message says it must be.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rdist.errors import RdistError
from rdist.utils import suggest

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# A name users type (after zoo:, after `rdist reproduce`): one word.
Name = Annotated[str, Field(pattern=r"^[\w.+-]+$", description="one word of letters, digits and . _ + -")]
Text = Annotated[str, Field(min_length=1, description="text")]
Percent = Annotated[float, Field(ge=0, le=100, description="an accuracy in percent (0-100)")]


class Entry(BaseModel):
    """One entry of a catalogue: typed fields, none unknown, values exactly of their type (no "83" for 83)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Name

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def catalogue_path(name: str) -> Path:
    """A catalogue of the project (zoo.yaml, ...): the copy a wheel ships in rdist/catalogues/ (see
    build_hooks.py), else the file at the root of the source checkout, where the README documents it."""
    package = Path(__file__).resolve().parent
    shipped = package / "catalogues" / name
    return shipped if shipped.is_file() else package.parent / name


def schema_path(name: str) -> Path:
    """Where the JSON Schema of the catalogue file `name` (zoo.yaml) is kept: rdist/catalogues/zoo.schema.json,
    named by the `# yaml-language-server: $schema=` line at the top of the catalogue."""
    return Path(__file__).resolve().parent / "catalogues" / f"{Path(name).stem}.schema.json"


T = TypeVar("T", bound=Entry)


@dataclass(frozen=True)
class Catalogue(Generic[T]):
    """A YAML file whose `key:` lists entries of type `entry`, each with a unique name."""

    what: str  # "zoo": says which catalogue an error is about
    file: str  # the project's file: zoo.yaml
    key: str  # the top-level list: students
    entry: type[T]
    env: str  # the environment variable that names another file: RDIST_ZOO
    option: str  # the option that does: --zoo
    noun: str  # what an entry is called where a name is unknown: zoo model
    listing: str  # the command that shows the entries: `rdist zoo list`

    def path(self, explicit: str | Path | None = None) -> Path:
        """The catalogue to read: the path given (an option), else $`env`, else the project's file."""
        if explicit:
            return Path(explicit).expanduser()
        if os.environ.get(self.env):
            return Path(os.environ[self.env]).expanduser()
        return catalogue_path(self.file)

    def load(self, path: str | Path | None = None) -> list[T]:
        """Every entry of the catalogue at `path` (see `path`), validated: the first problem is a one-line
        RdistError naming the file, the entry (its index and name) and the field."""
        path = self.path(path)
        entries: list[T] = []
        for index, raw in enumerate(self._raw_entries(path), start=1):
            where = f"{path}: entry {index}"
            if isinstance(raw, dict) and isinstance(raw.get("name"), str):
                where = f"{where} ('{raw['name']}')"
            if isinstance(raw, dict):  # an empty value (`teacher:`) is a field left out
                raw = {k: v for k, v in raw.items() if v is not None and v != ""}
            try:
                entry = self.entry.model_validate(raw)
            except ValidationError as exc:
                raise RdistError(problem(exc, self.entry, where)) from None
            if any(e.name == entry.name for e in entries):
                raise RdistError(f"{path}: entry {index} repeats the name '{entry.name}'; names must be unique")
            entries.append(entry)
        return entries

    def find(self, name: str, entries: list[T] | None = None, path: str | Path | None = None) -> T:
        """The entry called `name` of `entries` (by default those of the catalogue at `path`)."""
        entries = self.load(path) if entries is None else entries
        for entry in entries:
            if entry.name == name:
                return entry
        if not entries:
            raise RdistError(f"{self.noun} '{name}' not found: {self.path(path)} lists no {self.key} yet")
        raise RdistError(f"unknown {self.noun} '{name}'{suggest(name, [e.name for e in entries])}; {self.listing} "
                         "shows them")

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the whole file, for editors (see `schema_path`)."""
        entry = self.entry.model_json_schema()
        defs = entry.pop("$defs", {})
        return {"$schema": SCHEMA_DIALECT, "title": f"rdist {self.file}",
                "description": f"The {self.what} catalogue of rdist; {self.listing} shows it.", "type": "object",
                "properties": {self.key: {"type": "array", "items": {"$ref": f"#/$defs/{self.entry.__name__}"}}},
                "required": [self.key], "$defs": {**defs, self.entry.__name__: entry}}

    def _raw_entries(self, path: Path) -> list[Any]:
        import yaml  # only the catalogues need it

        how_to_fix = f"pass {self.option} PATH or set {self.env} to a {self.file}"
        if not path.is_file():
            raise RdistError(f"{self.what} catalogue not found: {path}; {how_to_fix}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise RdistError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8") \
                from None
        except OSError as exc:
            raise RdistError(f"cannot read {path} ({exc.strerror or exc}); {how_to_fix}") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise RdistError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(data, dict) or self.key not in data:
            raise RdistError(f"{path}: expected a mapping with a `{self.key}:` list at the top")
        raw_entries = data[self.key] or []
        if not isinstance(raw_entries, list):
            raise RdistError(f"{path}: `{self.key}:` must be a list of entries")
        return raw_entries


def problem(error: ValidationError, model: type[BaseModel], where: str) -> str:
    """The first problem of `error` (from validating a `model`) as one line: where, which field, what is wrong.

    The field's schema gives its description ("an accuracy in percent (0-100)"), which is what a wrong value
    must be. Of the errors about one field of a union (a name or a stage), the deepest names the problem best.
    """
    errors = error.errors(include_url=False)
    first = errors[0]["loc"][:1]
    err = max((e for e in errors if e["loc"][:1] == first), key=lambda e: len(e["loc"]))
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    node, parent, path = schema, schema, []
    for i, item in enumerate(err["loc"]):
        node = _resolve(node, defs)
        properties = _properties(node, defs, err["loc"][i + 1] if i + 1 < len(err["loc"]) else None)
        if item in properties:
            parent, node = properties, properties[item]
            path.append(str(item))
        elif err["type"] == "extra_forbidden" and i == len(err["loc"]) - 1:
            parent, node = properties, {}
            path.append(str(item))
        # anything else is pydantic's name for a member of a union (str, TeacherStage): not a field
    field = ".".join(path)
    kind = err["type"]
    if not path:
        return f"{where} is not a mapping of fields ({', '.join(schema.get('properties', {}))})"
    if kind == "missing":
        return f"{where} is missing field '{field}'"
    if kind == "extra_forbidden":
        return f"{where} has unknown field '{field}'{suggest(path[-1], [k for k in parent if k != path[-1]])}"
    if kind == "value_error":  # a validator's own sentence
        return f"{where}: field '{field}': {err['ctx']['error']}"
    node = _resolve(node, defs)
    description = node.get("description") or next(
        (m["description"] for m in map(lambda m: _resolve(m, defs), node.get("anyOf", ())) if "description" in m), None)
    must = f"must be {description}" if description else err["msg"].lower()
    return f"{where}: field '{field}' {must}, got {err['input']!r}"


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = {**defs[node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _properties(node: dict[str, Any], defs: dict[str, Any], then: Any) -> dict[str, Any]:
    """The fields of `node`: its own, or those of the member of its union that has the field `then`."""
    if "properties" in node:
        return node["properties"]
    for member in node.get("anyOf", ()):
        member = _resolve(member, defs)
        if then in member.get("properties", {}) or (then is None and "properties" in member):
            return member["properties"]
    return {}
