"""Files rdist writes and reads: the cache directory, atomic writes, output checks and checksums."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from rdist.errors import RdistError
from rdist.utils import first_line

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
