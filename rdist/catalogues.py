"""The project's YAML catalogues (zoo.yaml, reproductions.yaml): where they are found and how they are read."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, TypeVar

from rdist.errors import RdistError

def catalogue_path(name: str) -> Path:
    """A catalogue of the project (zoo.yaml, ...): the copy a wheel ships in rdist/catalogues/ (see
    build_hooks.py), else the file at the root of the source checkout, where the README documents it."""
    package = Path(__file__).resolve().parent
    shipped = package / "catalogues" / name
    return shipped if shipped.is_file() else package.parent / name


T = TypeVar("T")


def catalogue_file(explicit: str | Path | None, env: str, name: str) -> Path:
    """The catalogue to read: the path given (an option), else $`env`, else the project's catalogue `name`."""
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get(env):
        return Path(os.environ[env]).expanduser()
    return catalogue_path(name)


def load_catalogue(what: str, path: Path, key: str, parse_entry: Callable[[object, str], T],
                   how_to_fix: str) -> list[T]:
    """The entries of the `key:` list of the YAML catalogue at `path` (the `what` catalogue: "zoo", ...), each read
    by `parse_entry(raw, where)`; their `name`s must be unique. `how_to_fix` ends the errors about the file itself
    ("pass --zoo PATH ...")."""
    import yaml  # only the catalogues need it

    if not path.is_file():
        raise RdistError(f"{what} catalogue not found: {path}; {how_to_fix}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise RdistError(f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded); save it as UTF-8") from None
    except OSError as exc:
        raise RdistError(f"cannot read {path} ({exc.strerror or exc}); {how_to_fix}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise RdistError(f"{path} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict) or key not in data:
        raise RdistError(f"{path}: expected a mapping with a `{key}:` list at the top")
    raw_entries = data[key] or []
    if not isinstance(raw_entries, list):
        raise RdistError(f"{path}: `{key}:` must be a list of entries")
    entries: list[T] = []
    for index, raw in enumerate(raw_entries, start=1):
        entry = parse_entry(raw, f"{path}: entry {index}")
        if any(e.name == entry.name for e in entries):
            raise RdistError(f"{path}: entry {index} repeats the name '{entry.name}'; names must be unique")
        entries.append(entry)
    return entries


