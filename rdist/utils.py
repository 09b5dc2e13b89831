"""Small helpers shared by every layer: name suggestions, eps parsing, devices, files, error text."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import re
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import torch

from rdist.errors import RdistError


def suggest(name: str, choices: Iterable[str]) -> str:
    """' (did you mean: a, b?)' for the closest choices, or a list of all choices when none is close."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return f" (did you mean: {', '.join(close)}?)"
    return f" (choose from: {', '.join(choices)})"


def unknown(kind: str, name: str, choices: Iterable[str]) -> RdistError:
    return RdistError(f"unknown {kind} '{name}'{suggest(name, choices)}")


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (or its type's name when it has none), for one-line errors;
    terminal colour codes (torch puts some in its messages) are dropped."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_eps(text: str | float, option: str = "--eps") -> float:
    """Parse an L-inf budget given as '8/255' or '0.031' in [0,1] pixel units; errors name `option`."""
    try:
        value = float(Fraction(text)) if isinstance(text, str) else float(text)
    except (ValueError, ZeroDivisionError):
        raise RdistError(f"cannot read {option} '{text}': write it as a fraction like 8/255 "
                         "or a number like 0.031") from None
    if value < 0:
        raise RdistError(f"{option} must be >= 0, got {text}")
    if value >= 1:
        raise RdistError(
            f"{option} {text} is not in [0,1] pixel units: did you mean {text}/255? (write {option} {text}/255)"
        )
    return value


def format_eps(eps: float) -> str:
    """8/255 for budgets that are whole multiples of 1/255, else the plain number."""
    k = eps * 255
    return f"{round(k)}/255" if abs(k - round(k)) < 1e-6 else f"{eps:.4g}"


def default_device(name: str | None = None) -> torch.device:
    """The device `name` ("cpu", "cuda", "cuda:1"), checked to exist; without a name, CUDA when present."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RdistError(f"cannot read device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RdistError(f"--device {name} asks for CUDA but no CUDA GPU is visible; use --device cpu")
    return device


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


def cache_dir() -> Path:
    """Where rdist keeps datasets and teachers: $RDIST_CACHE, else ~/.cache/rdist."""
    return Path(os.environ.get("RDIST_CACHE", Path.home() / ".cache" / "rdist")).expanduser()


def _read_umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


# Read once at import: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, on failure delete it.

    A reader never sees a half-written file, and a crash leaves the old file intact. An OSError while
    writing (no such directory, permission denied, disk full) becomes an RdistError naming `path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions any new file would get under the umask.
    tmp_path.chmod(0o666 & ~_UMASK)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as written:  # on disk before the rename, so a crash leaves old or new
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
    except OSError as exc:
        raise _unwritable(path, exc) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _unwritable(path: Path, exc: OSError) -> RdistError:
    return RdistError(f"cannot write to {path} ({exc.strerror or first_line(exc)}); choose a writable location")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output(path: str | os.PathLike, option: str, *, inputs: Iterable[tuple[str, str | os.PathLike | None]] = (),
                 directory: bool = False, files: Iterable[str] = ()) -> Path:
    """Refuse, before any work starts, an output path that cannot be written or that names an input.

    `path` is a file (or with `directory`, a directory whose `files` the command writes). It is refused
    when it is a directory (a file), a file (a directory), lies under a file, lies in a directory this
    process cannot write to, or when it (or one of `files` in it) is the same file as one of `inputs`,
    pairs (what, path) such as ("the model", "m.safetensors"), compared by resolved path. Nothing is
    created: the command's atomic writes make the directories when they write.
    """
    path = Path(path).expanduser()
    fix = f"pass another path to {option}"
    try:
        if directory and path.exists() and not path.is_dir():
            raise RdistError(f"cannot write to {path}: it is a file, and {option} takes a directory; {fix}")
        if not directory and path.is_dir():
            raise RdistError(f"cannot write to {path}: it is a directory, and {option} takes a file name; {fix}")
        existing = next(p for p in ((path, *path.parents) if directory else path.parents) if p.exists())
    except OSError as exc:
        raise RdistError(f"cannot write to {path} ({exc.strerror or first_line(exc)}); {fix}") from None
    if not existing.is_dir():
        raise RdistError(f"cannot write to {path}: {existing} is a file, not a directory; {fix}")
    try:  # os.access says yes to root even on a read-only mount: only a real file proves it
        fd, probe = tempfile.mkstemp(prefix=".rdist-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RdistError(f"cannot write to {path} ({exc.strerror or first_line(exc)} in {existing}); {fix}") from None
    outputs = [path / name for name in files] if directory else [path]
    for what, source in inputs:
        if source is None:
            continue
        for output in outputs:
            if _same_file(output, Path(source).expanduser()):
                raise RdistError(f"{option} {path} would overwrite {what} {source}, an input of this command; "
                                 f"{fix}")
    return path


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
