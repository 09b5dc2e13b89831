"""Files rdist writes and reads: the cache directory, atomic writes, output checks and checksums."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import stat
import tempfile
import time
import warnings
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


# One atomic write of NAME works in the directory .NAME.<16 hex digits>.tmp beside it: only that name is ever
# swept. 16 random hex digits are not a name a person gives a file; a shorter or wider pattern (pre-release rdist's
# mkstemp names, 8 characters) would also match a user's `.draft.20261206.tmp`, and delete it.
TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write `path`'s new content to; on success it replaces `path` in one rename, on
    failure (or an interrupt) it is deleted.

    A reader never sees a half-written file, and a crash leaves the old file intact. The new file gets the
    permissions of the file it replaces, or, when `path` is new, those any new file gets under the umask. An
    OSError while writing (no such directory, permission denied, disk full) becomes an RdistError naming `path`.

    The temporary path lies in a private directory (see TEMP_NAME) beside `path`, so that whatever a writer makes
    there is removed with it: safetensors' `save_file`, say, writes a temporary file of its own (mode 0600) and
    renames it over the path it is given.
    """
    path = Path(path)
    # Only a name until the protected block creates it: every statement after it exists is inside the try whose
    # finally removes it, so no exception or interrupt, wherever it lands, leaves it behind.
    work = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            work.mkdir(mode=0o700)
            tmp = work / path.name
            tmp.touch(mode=0o600)
            yield tmp
            with open(tmp, "rb") as written:  # on disk before the rename, so a crash leaves old or new
                os.fsync(written.fileno())
            # Set last: a writer may have replaced the file (safetensors does) and with it any mode set before.
            tmp.chmod(_new_mode(path))
            os.replace(tmp, path)
        except OSError as exc:
            raise _unwritable(path, exc) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def download(url: str, path: Path, failed: str, instead: str) -> None:
    """`url` saved as `path`, whole or not at all (`atomic_path`). Unreachable or refused: one line,
    "`failed` (the error); `instead`", where `instead` says how to get the file without this machine's network."""
    import urllib.request  # here: most commands download nothing

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(path) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
    except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
        raise RdistError(f"{failed} ({type(exc).__name__}: {first_line(exc)}); {instead}") from None


def _new_mode(path: Path) -> int:
    """The permission bits of `path` (a rewrite keeps them), or those of a file created under the umask."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return 0o666 & ~_UMASK


def sweep_temp_files(directory: str | os.PathLike) -> list[Path]:
    """Delete what atomic writes killed midway (kill -9, power loss) left in `directory`, and nothing else: only
    entries named as `atomic_path` names them, only in `directory` itself. Call it only while no other process
    writes there (holding the directory, see `hold_directory`). Returns what it deleted."""
    swept = []
    for entry in Path(directory).iterdir():
        if not TEMP_NAME.fullmatch(entry.name) or entry.is_symlink():
            continue
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        swept.append(entry)
    return swept


LOCK_FILE = ".rdist.lock"
# What flock says on a file system that cannot lock files (some NFS setups, Lustre mounted without -o flock).
_NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


@contextlib.contextmanager
def hold_directory(directory: str | os.PathLike, fix: str) -> Iterator[None]:
    """Hold `directory` (made if missing) for this process alone, or refuse with one line naming the holder.

    The hold is an exclusive `flock` on `directory`/.rdist.lock, which records the holder's PID and host; it is
    released when the block ends, and by the kernel when the process dies (kill -9 leaves no stale hold: the file
    may stay, unlocked, and the next holder takes it). A second process is refused at once with RdistError
    "DIR is being written by process PID on host HOST; `fix`". Where the file system cannot lock files, the block
    runs unheld, with a warning.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = _lock(directory, fix)
    except OSError as exc:
        raise _unwritable(directory, exc) from None
    try:
        yield
    finally:
        if fd is not None:
            _unlock(directory / LOCK_FILE, fd)


def _lock(directory: Path, fix: str) -> int | None:
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        warnings.warn(f"cannot lock {directory} on this system: another process could write to it at the same time",
                      stacklevel=4)
        return None
    path = directory / LOCK_FILE
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise RdistError(f"{directory} is being written by {holder}; {fix}") from None
        except OSError as exc:
            os.close(fd)
            if exc.errno not in _NO_LOCKS:
                raise
            warnings.warn(f"cannot lock {directory} ({exc.strerror}): another process could write to it at the "
                          "same time", stacklevel=4)
            return None
        try:
            # The holder before may have deleted the file between our open and lock: a lock on it holds nothing.
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                os.ftruncate(fd, 0)
                os.write(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname()}) + "\n").encode())
                return fd
        except FileNotFoundError:
            pass
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def _holder(fd: int) -> str:
    """"process PID on host HOST", as the holder of the lock file `fd` wrote it (it writes just after locking)."""
    for _ in range(20):
        try:
            holder = json.loads(os.pread(fd, 4096, 0))
            return f"process {holder['pid']} on host {holder['host']}"
        except (ValueError, KeyError, TypeError):
            time.sleep(0.05)
    return "another process"


def _unlock(path: Path, fd: int) -> None:
    # Deleted while still locked, so that a process that opens it from now on makes a new one (see `_lock`).
    try:
        path.unlink(missing_ok=True)
    finally:
        os.close(fd)


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
        # A file without a name where the system allows (O_TMPFILE), so that no kill can leave it behind.
        with tempfile.TemporaryFile(prefix=".rdist-probe-", dir=existing):
            pass
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
