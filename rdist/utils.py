"""Small helpers shared by every layer: name suggestions, eps parsing, devices, files, error text."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

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
    """The first line of an exception's message (or its type's name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_eps(text: str | float) -> float:
    """Parse an L-inf budget given as '8/255' or '0.031' in [0,1] pixel units."""
    try:
        value = float(Fraction(text)) if isinstance(text, str) else float(text)
    except (ValueError, ZeroDivisionError):
        raise RdistError(f"cannot read eps '{text}': write it as a fraction like 8/255 "
                         "or a number like 0.031") from None
    if value < 0:
        raise RdistError(f"eps must be >= 0, got {text}")
    if value >= 1:
        raise RdistError(
            f"eps {text} is not in [0,1] pixel units: did you mean {text}/255? (write --eps {text}/255)"
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

    A reader never sees a half-written file, and a crash leaves the old file intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600 files; give the result the permissions any new file would get under the umask.
    tmp_path.chmod(0o666 & ~_UMASK)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as written:  # on disk before the rename, so a crash leaves old or new
            os.fsync(written.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
