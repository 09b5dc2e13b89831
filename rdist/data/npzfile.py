"""The arrays of an `.npz` file, memory-mapped where they lie, never loaded whole and never unpickled.

`np.savez` stores each array as an uncompressed `.npy` member of a zip file, so the array's bytes sit at a
fixed offset of the file: the member's local zip header, then the `.npy` header, then the data. `npz_members`
finds that offset from the zip's central directory and the two headers, and `map_npz` puts an `np.memmap`
there: opening a 61 GB file reads a few kilobytes. Members compressed by `np.savez_compressed` have no such
offset; they are refused with the one-time conversion (`convert_npz`, on the command line
`rdist data convert SRC DST`), which streams each member into an uncompressed copy in bounded memory.
"""

from __future__ import annotations

import os
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

import numpy as np

from rdist.errors import RdistError
from rdist.files import atomic_path
from rdist.utils import first_line

CONVERT_COMMAND = "rdist data convert {src} {dst}"  # rdist/cli/data.py
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")  # the zip local file header, before its name and extra field
_COPY_CHUNK = 16 << 20


@dataclass(frozen=True)
class Member:
    """One `.npy` member of an npz file: where its array data starts in the file, and what it holds."""

    name: str  # the array's name (the member's file name without .npy)
    offset: int  # byte offset of the array's first element in the npz file
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def convert_hint(path: Path) -> str:
    return CONVERT_COMMAND.format(src=path, dst=path.with_name(path.stem + "-uncompressed.npz"))


def _unreadable(path: Path, why: str) -> RdistError:
    return RdistError(f"{path} is not a readable NumPy .npz archive ({why}); give a file written by numpy.savez")


def _read_npy_header(f: BinaryIO, path: Path, name: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            return np.lib.format.read_array_header_1_0(f)
        if version == (2, 0):
            return np.lib.format.read_array_header_2_0(f)
        raise ValueError(f"npy format version {version[0]}.{version[1]} (rdist reads 1.0 and 2.0)")
    except (ValueError, EOFError, OSError) as exc:
        raise _unreadable(path, f"array '{name}': {first_line(exc)}") from None


def npz_members(path: str | os.PathLike) -> dict[str, Member]:
    """The `.npy` members of `path` by array name, read from the zip directory and the members' headers only.

    Refused in one line: a file that is not a zip, a compressed member (with the conversion command), an
    array of Python objects (loading it would unpickle), a Fortran-ordered array, a member cut short."""
    path = Path(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _unreadable(path, first_line(exc)) from None
    members: dict[str, Member] = {}
    size = path.stat().st_size
    with archive, open(path, "rb") as f:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            if info.compress_type != zipfile.ZIP_STORED:
                raise RdistError(f"{path}: array '{name}' is compressed (numpy.savez_compressed), which cannot be "
                                 f"memory-mapped; convert the file once: {convert_hint(path)}")
            f.seek(info.header_offset)
            fields = _LOCAL_HEADER.unpack(f.read(_LOCAL_HEADER.size).ljust(_LOCAL_HEADER.size, b"\0"))
            if fields[0] != b"PK\x03\x04":
                raise _unreadable(path, f"array '{name}' has no local zip header where the directory says")
            start = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10]
            f.seek(start)
            shape, fortran_order, dtype = _read_npy_header(f, path, name)
            if dtype.hasobject:
                raise RdistError(f"{path}: array '{name}' holds pickled Python objects ({dtype}); rdist never "
                                 f"unpickles data files: save it as a numeric array (uint8 images, integer labels)")
            member = Member(name, f.tell(), tuple(int(n) for n in shape), dtype, bool(fortran_order))
            if member.offset + member.nbytes > min(size, start + info.file_size):
                raise _unreadable(path, f"array '{name}' is cut short: is the file truncated?")
            members[name] = member
    return members


def map_member(path: str | os.PathLike, member: Member) -> np.ndarray:
    """`member` of npz file `path` as a read-only `np.memmap` (an empty array has nothing to map)."""
    if member.fortran_order:
        raise RdistError(f"{path}: array '{member.name}' is stored in Fortran order; save it C-contiguous "
                         f"(numpy.savez(path, {member.name}=numpy.ascontiguousarray(array)))")
    if member.nbytes == 0:
        return np.empty(member.shape, member.dtype)
    return np.memmap(path, dtype=member.dtype, mode="r", offset=member.offset, shape=member.shape)


def map_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of npz file `path`, memory-mapped (nothing is read until it is indexed)."""
    return {name: map_member(path, m) for name, m in npz_members(path).items()}


class NpzWriter:
    """Writes an uncompressed npz (as `np.savez` does) array by array from chunks, in bounded memory, atomically.

        with NpzWriter(path) as out:
            out.add("image", np.uint8, (n, 32, 32, 3), chunks)   # chunks: arrays of whole rows, in order
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self) -> "NpzWriter":
        self._atomic = atomic_path(self.path)
        self._zip = zipfile.ZipFile(self._atomic.__enter__(), "w", zipfile.ZIP_STORED, allowZip64=True)
        return self

    def __exit__(self, *exc) -> None:
        self._zip.close()
        self._atomic.__exit__(*exc)

    def add(self, name: str, dtype: np.dtype, shape: tuple[int, ...], chunks: Iterable[np.ndarray | bytes]) -> None:
        """Array `name` of `dtype` and `shape`, its C-order bytes given as consecutive chunks."""
        dtype = np.dtype(dtype)
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
        expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        written = 0
        with self._zip.open(name + ".npy", "w", force_zip64=True) as member:
            if len(repr(header)) < 65_000:  # version 1.0 as np.save writes it; 2.0 only for huge headers
                np.lib.format.write_array_header_1_0(member, header)
            else:
                np.lib.format.write_array_header_2_0(member, header)
            for chunk in chunks:
                data = memoryview(np.ascontiguousarray(chunk, dtype=dtype) if isinstance(chunk, np.ndarray)
                                  else chunk).cast("B")
                member.write(data)
                written += len(data)
        if written != expected:
            raise RdistError(f"array '{name}': {written} bytes were written for shape {shape} of {dtype}, "
                             f"which needs {expected}")


def _stream(source: BinaryIO) -> Iterator[bytes]:
    while chunk := source.read(_COPY_CHUNK):
        yield chunk


def convert_npz(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Write `dst`, an uncompressed copy of npz file `src` (as `np.savez` would have written it), streaming each
    member through a bounded buffer: a 61 GB file needs a few MB of memory. Arrays of Python objects are
    refused before anything is written, and `dst` appears only when complete."""
    src, dst = Path(src), Path(dst)
    if src.resolve() == dst.resolve():
        raise RdistError(f"convert_npz: the output {dst} is the input; give another output path")
    try:
        archive = zipfile.ZipFile(src)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise _unreadable(src, first_line(exc)) from None
    with archive:
        headers = {}
        for info in archive.infolist():
            if info.filename.endswith(".npy"):
                with archive.open(info) as member:
                    shape, _, dtype = headers[info.filename] = _read_npy_header(member, src, info.filename[:-4])
                if dtype.hasobject:
                    raise RdistError(f"{src}: array '{info.filename[:-4]}' holds pickled Python objects ({dtype}); "
                                     "rdist never unpickles data files and will not convert it")
                if headers[info.filename][1]:
                    raise RdistError(f"{src}: array '{info.filename[:-4]}' is stored in Fortran order; rdist "
                                     "converts C-ordered arrays only")
        with NpzWriter(dst) as out:
            for filename, (shape, _, dtype) in headers.items():
                with archive.open(filename) as member:
                    _read_npy_header(member, src, filename[:-4])  # skip to the data
                    out.add(filename[:-4], dtype, shape, _stream(member))
    return dst
