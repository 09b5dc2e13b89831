"""Generated training images (`--extra-data`): one or more `.npz` files, memory-mapped, checked before training.

A source is a local file, `hf://datasets/ORG/REPO[@REV]/PATH` (downloaded once into the Hugging Face cache),
`https://HOST/PATH.npz` (downloaded once into `$RDIST_CACHE/extra/HOST/PATH`, e.g. DeepMind's
`https://storage.googleapis.com/dm-adversarial-robustness/cifar10_ddpm.npz`; a compressed download is converted there
once, as `rdist data convert` would),
or several of them separated by commas (the parts of one set, e.g. EDM's 20M in two files), concatenated
logically: nothing is copied. Each file is in one of two layouts:

- DeepMind/EDM: `image` uint8 (N, H, W, C) and `label` integer (N,), the layout of DeepMind's
  `cifar10_ddpm.npz` (Gowal et al. 2021, Rebuffi et al. 2021) and of Wang et al. 2023's EDM sets on the Hub
  (`P2333/DM-Improves-AT`);
- rdist: `x_train` uint8 (N, C, H, W) and `y_train` integer (N,), the training half of an `--data npz:PATH`
  file (its `x_test`/`y_test`, if any, are not read).

The images must be uint8 of the real dataset's channels and size, one integer label per image in
[0, classes); a file that breaks a rule is refused in one line naming the array and the fix. Labels are read
once, in chunks, checked, and kept in memory in the smallest integer type (one byte per image for up to 256
classes). Images stay on disk: batches read their rows with positional reads (`read_images`), which leave the
process's resident memory at the size of the batch whatever the run's length, where indexing the memory map
would map every page touched (and the kernel's fault-around its neighbours) into the process.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from rdist.data.npzfile import Member, convert_npz, map_member, npz_members
from rdist.errors import RdistError
from rdist.files import download
from rdist.files import cache_dir as rdist_cache
from rdist.hubget import hub_download
from rdist.utils import first_line

HF_PREFIX = "hf://datasets/"
URL_PREFIXES = ("https://", "http://")
# (images, labels, layout of the images)
LAYOUTS = (("image", "label", "NHWC"), ("x_train", "y_train", "NCHW"))
_LABEL_CHUNK = 1 << 22


@dataclass
class ExtraPart:
    """One file of a generated set: its arrays memory-mapped, its labels checked and held compactly."""

    source: str  # as given (a path, an hf:// name or a URL)
    path: Path  # the local file
    layout: str  # "NHWC" (image/label) or "NCHW" (x_train/y_train)
    images: np.ndarray  # np.memmap, (N, H, W, C) or (N, C, H, W) uint8
    labels: np.ndarray  # in memory, (N,), the smallest unsigned type that holds every class
    offset: int  # byte offset of the first image in the file
    fd: int = field(default=-1, repr=False)

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.images.shape[1:]))


def parse_sources(source: str | Sequence[str]) -> list[str]:
    """The parts of `source`: a comma-separated string or a sequence of paths / hf:// names / URLs."""
    parts = [s.strip() for s in (source.split(",") if isinstance(source, str) else source)]
    if not parts or not all(parts):
        raise RdistError(f"extra data '{source}' names no file (an empty part); give PATH.npz, "
                         f"{HF_PREFIX}ORG/REPO/PATH, or several separated by commas")
    return parts


def hf_url(source: str, endpoint: str | None = None) -> tuple[str, str | None, str, str]:
    """(repo, revision, path in the repo, download URL) of `hf://datasets/ORG/REPO[@REV]/PATH`."""
    match = re.fullmatch(r"hf://datasets/([\w.-]+/[\w.-]+)(?:@([^/]+))?/(.+)", source)
    if not match:
        raise RdistError(f"'{source}' is not a Hub dataset file: write {HF_PREFIX}ORG/REPO/PATH or "
                         f"{HF_PREFIX}ORG/REPO@REV/PATH (e.g. {HF_PREFIX}P2333/DM-Improves-AT/cifar10/1m.npz)")
    repo, revision, path = match.groups()
    base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    return repo, revision, path, f"{base}/datasets/{repo}/resolve/{revision or 'main'}/{path}"


def download_hf(source: str, *, cache_dir: str | os.PathLike | None = None, endpoint: str | None = None) -> Path:
    """The local copy of Hub dataset file `source`, downloaded once into the Hugging Face cache (HF_HUB_CACHE;
    a second call reads the cache). Offline or unreachable: one line naming the file and where to put it."""
    from huggingface_hub.errors import EntryNotFoundError, HTTPError

    repo, revision, path, url = hf_url(source, endpoint)
    try:
        return hub_download(repo, path, repo_type="dataset", revision=revision, cache_dir=cache_dir,
                            endpoint=endpoint)
    except (OSError, HTTPError, EntryNotFoundError, ValueError) as exc:
        raise RdistError(f"cannot download {source} ({type(exc).__name__}: {first_line(exc)}); offline, fetch {url} "
                         f"on a machine with network and give its local path instead (e.g. --extra-data "
                         f"/data/{Path(path).name})") from None


def url_cache_path(url: str) -> Path:
    """Where a downloaded `url` is kept: $RDIST_CACHE/extra/HOST/PATH."""
    parsed = urllib.parse.urlparse(url)
    parts = [p for p in urllib.parse.unquote(parsed.path).split("/") if p not in ("", ".", "..")]
    if not parsed.netloc or not parts or not parts[-1].endswith(".npz"):
        raise RdistError(f"'{url}' names no .npz file; give the URL of one (e.g. https://storage.googleapis.com/"
                         "dm-adversarial-robustness/cifar10_ddpm.npz)")
    return rdist_cache() / "extra" / parsed.netloc / Path(*parts)


def download_url(url: str) -> Path:
    """The local copy of `url`, downloaded once into `url_cache_path(url)` (a second call reads it) and, if its
    arrays are compressed, converted there once into an uncompressed npz that can be memory-mapped. Offline or
    unreachable: one line naming the URL and where to put the file."""
    path = url_cache_path(url)
    if path.is_file():
        return path
    fetched = path.with_name(path.name + ".download")
    download(url, fetched, f"cannot download {url}", f"offline, fetch it on a machine with network and save it as "
             f"{path} (or give its local path to --extra-data)")
    try:
        with zipfile.ZipFile(fetched) as archive:
            compressed = any(i.compress_type != zipfile.ZIP_STORED for i in archive.infolist())
    except (zipfile.BadZipFile, OSError):
        compressed = False  # not an npz: opening it says so
    if compressed:
        try:
            convert_npz(fetched, path)
        finally:  # converted, or not convertible: the download is no use either way
            fetched.unlink()
    else:
        fetched.replace(path)
    return path


def _layout(path: Path, members: dict[str, Member]) -> tuple[str, str, str]:
    for images, labels, layout in LAYOUTS:
        if images in members:
            if labels not in members:
                raise RdistError(f"extra data {path} has '{images}' but no '{labels}' array; it needs one integer "
                                 f"class label per image in '{labels}'")
            return images, labels, layout
    raise RdistError(f"extra data {path} has arrays {sorted(members) or 'none'}; it needs 'image' (uint8 N x H x W "
                     f"x C) and 'label' (DeepMind/EDM layout) or 'x_train' (uint8 N x C x H x W) and 'y_train' "
                     f"(rdist's layout)")


def _check_images(path: Path, name: str, member: Member, layout: str, image_shape: tuple[int, int, int]) -> None:
    c, h, w = image_shape
    want = (h, w, c) if layout == "NHWC" else (c, h, w)
    letters = " x ".join(layout[1:])
    shape = f"{member.dtype} {member.shape}"
    if member.dtype != np.uint8 or len(member.shape) != 4 or member.shape[1:] != want:
        other, arrays, transposed = (("NCHW", "'x_train'/'y_train'", (c, h, w)) if layout == "NHWC" else
                                     ("NHWC", "'image'/'label'", (h, w, c)))
        fix = f"save 0-255 uint8 images of the real dataset's size in the {layout} layout"
        if member.shape[1:] == transposed != want:
            fix = f"these look like {other} images: store them as {arrays}"
        raise RdistError(f"extra data {path}: array '{name}' must be uint8 images N x {letters} = N x "
                         f"{' x '.join(map(str, want))} (the real data's {c} channels and {h}x{w} size), got "
                         f"{shape}; {fix}")
    if member.shape[0] == 0:
        raise RdistError(f"extra data {path}: array '{name}' holds no images; give a file with generated images")


def _read_labels(path: Path, fd: int, member: Member, count: int, num_classes: int) -> np.ndarray:
    """Labels of `member`, checked in chunks (a 20M-label file never sits in memory at its own width) and kept
    in the smallest unsigned type that holds every class."""
    name = member.name
    if len(member.shape) != 1 or not np.issubdtype(member.dtype, np.integer):
        raise RdistError(f"extra data {path}: array '{name}' must be a 1-D array of integer class labels, got "
                         f"{member.dtype} {member.shape}; save one integer label per image")
    if member.shape[0] != count:
        raise RdistError(f"extra data {path}: array '{name}' has {member.shape[0]} labels for {count} images; it "
                         f"needs one label per image")
    compact = np.empty(count, np.min_scalar_type(max(num_classes - 1, 0)))
    buffer = np.empty(min(count, _LABEL_CHUNK), member.dtype)
    for start in range(0, count, _LABEL_CHUNK):
        chunk = buffer[:min(_LABEL_CHUNK, count - start)]
        _pread(fd, chunk, member.offset + start * member.dtype.itemsize, path)
        low, high = int(chunk.min()), int(chunk.max())
        if low < 0 or high >= num_classes:
            bad = low if low < 0 else high
            raise RdistError(f"extra data {path}: array '{name}' holds label {bad}, outside the real dataset's "
                             f"classes [0, {num_classes}); labels are class indices 0..{num_classes - 1}")
        compact[start:start + len(chunk)] = chunk
    return compact


def _pread(fd: int, out: np.ndarray, offset: int, path: Path) -> None:
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        try:
            n = os.preadv(fd, [view[done:]], offset + done)
        except OSError as exc:
            raise RdistError(f"cannot read extra data {path} ({exc.strerror or first_line(exc)}); is the file or its "
                             "disk still there?") from None
        if n <= 0:
            raise RdistError(f"extra data {path} ended early at byte {offset + done}: is the file truncated?")
        done += n


def _open_part(source: str, path: Path, image_shape: tuple[int, int, int], num_classes: int) -> ExtraPart:
    if not path.is_file():
        raise RdistError(f"extra data file not found: {path}; give PATH.npz with 'image'/'label' (NHWC) or "
                         f"'x_train'/'y_train' (NCHW) arrays")
    members = npz_members(path)
    images_name, labels_name, layout = _layout(path, members)
    _check_images(path, images_name, members[images_name], layout, image_shape)
    images = map_member(path, members[images_name])
    fd = os.open(path, os.O_RDONLY)
    try:
        labels = _read_labels(path, fd, members[labels_name], len(images), num_classes)
    except BaseException:
        os.close(fd)
        raise
    return ExtraPart(source, path, layout, images, labels, members[images_name].offset, fd)


class ExtraData:
    """Generated images of one or more files, as one indexable set.

    `len(extra)` images; `read_images(index, out)` reads rows `index` into `out` in `layout` (the first part's;
    rows of a part in the other layout are transposed); `labels(index)` their labels. Thread-safe: reads are
    positional. `close()` (or `with`) releases the files."""

    def __init__(self, parts: list[ExtraPart], image_shape: tuple[int, int, int], num_classes: int):
        self.parts, self.image_shape, self.num_classes = parts, tuple(image_shape), num_classes
        self.starts = np.cumsum([0] + [len(p.labels) for p in parts])
        self.layout = parts[0].layout
        c, h, w = self.image_shape
        self.row_shape = (h, w, c) if self.layout == "NHWC" else (c, h, w)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def labels(self, index: np.ndarray) -> np.ndarray:
        part = np.searchsorted(self.starts, index, side="right") - 1
        out = np.empty(len(index), np.int64)
        for k in np.unique(part):
            rows = part == k
            out[rows] = self.parts[k].labels[index[rows] - self.starts[k]]
        return out

    def read_images(self, index: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Rows `index` (sorted ascending for locality; repeats allowed) into `out`, uint8 (len(index), *row_shape).
        Consecutive rows of one part are read in one call."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) == 0:
            return out
        part = np.searchsorted(self.starts, index, side="right") - 1
        local = index - self.starts[part]
        # A run continues while the next row is the next image of the same part.
        breaks = np.flatnonzero((np.diff(local) != 1) | (np.diff(part) != 0)) + 1
        for first, stop in zip([0, *breaks.tolist()], [*breaks.tolist(), len(index)]):
            p = self.parts[int(part[first])]
            offset = p.offset + int(local[first]) * p.row_bytes
            if p.layout == self.layout:
                _pread(p.fd, out[first:stop], offset, p.path)
            else:  # read in the part's own layout, then transpose into place
                rows = np.empty((stop - first, *p.images.shape[1:]), np.uint8)
                _pread(p.fd, rows, offset, p.path)
                out[first:stop] = rows.transpose((0, 2, 3, 1) if self.layout == "NHWC" else (0, 3, 1, 2))
        return out

    def describe(self) -> dict:
        """What a run's provenance records: the sources, the files and their image counts."""
        return {"sources": [p.source for p in self.parts], "files": [str(p.path) for p in self.parts],
                "images": len(self), "layouts": [p.layout for p in self.parts]}

    def close(self) -> None:
        for part in self.parts:
            if part.fd >= 0:
                os.close(part.fd)
                part.fd = -1

    def __enter__(self) -> "ExtraData":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def open_extra_data(source: str | Sequence[str], *, image_shape: tuple[int, int, int], num_classes: int,
                    cache_dir: str | os.PathLike | None = None, endpoint: str | None = None) -> ExtraData:
    """The generated set `source` (PATH.npz, hf://datasets/ORG/REPO[@REV]/PATH, https://.../NAME.npz, or parts
    separated by commas),
    every part checked against the real dataset's `image_shape` (C, H, W) and `num_classes` before anything
    trains. Opening reads the zip and npy headers and the labels; the images stay on disk."""
    parts: list[ExtraPart] = []
    try:
        for name in parse_sources(source):
            if name.startswith("hf://"):
                path = download_hf(name, cache_dir=cache_dir, endpoint=endpoint)
            elif name.startswith(URL_PREFIXES):
                path = download_url(name)
            else:
                path = Path(name).expanduser()
            parts.append(_open_part(name, path, image_shape, num_classes))
    except BaseException:
        for part in parts:  # the files opened before the one refused
            os.close(part.fd)
        raise
    return ExtraData(parts, image_shape, num_classes)
