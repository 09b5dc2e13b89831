"""Tiny-ImageNet (Stanford CS231n): 64x64 colour images of 200 ImageNet classes, 100,000 for training and
10,000 for validation, the third dataset of IAD, AdaAD, PeerAiD and SAAD (they test on the validation split: the
test split has no labels).

The official archive `tiny-imagenet-200.zip` is downloaded once into `<root>/tiny-imagenet/`, parsed straight
from the zip (nothing is extracted), and the arrays are cached beside it as an uncompressed npz, which later runs
load instead. Layout read: `wnids.txt` (the 200 class ids), `train/<wnid>/images/*.JPEG`, `val/images/*.JPEG`
with their labels in `val/val_annotations.txt` (file name, wnid, box). Classes are numbered in sorted wnid order
and training images sorted by file name within a class, as torchvision's `ImageFolder` numbers them, which is how
the adversarial-distillation codes read this set: a teacher trained by them predicts rdist's class indices.
A few images are greyscale JPEGs; they are converted to RGB, as PIL's `convert("RGB")` in ImageFolder does.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import numpy as np

from rdist.errors import RdistError
from rdist.files import atomic_path, download
from rdist.utils import first_line

URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
ARCHIVE = "tiny-imagenet-200.zip"
CACHE = "tiny-imagenet-200.npz"
SIZE = 64


def _decode(archive: zipfile.ZipFile, name: str, path: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(archive.read(name))) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise RdistError(f"{path}: cannot read image {name} ({first_line(exc)}); the archive is damaged: delete it "
                         "and run again to download it") from None
    if pixels.shape != (SIZE, SIZE, 3):
        raise RdistError(f"{path}: image {name} is {pixels.shape[1]}x{pixels.shape[0]}, not {SIZE}x{SIZE}; is this "
                         f"the official {ARCHIVE}?")
    return pixels.transpose(2, 0, 1)


def _images(archive: zipfile.ZipFile, names: list[str], path: Path) -> np.ndarray:
    out = np.empty((len(names), 3, SIZE, SIZE), np.uint8)
    for k, name in enumerate(names):
        out[k] = _decode(archive, name, path)
    return out


def parse_archive(path: Path) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test (the validation split), y_test and classes (the wnids) of the official archive."""
    damaged = f"delete it and run again to download it, or place the official {ARCHIVE} there"
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise RdistError(f"{path} is not a readable zip archive ({first_line(exc)}); {damaged}") from None
    with archive:
        names = archive.namelist()
        listing = sorted((n for n in names if n.endswith("wnids.txt")), key=len)
        if not listing:
            raise RdistError(f"{path} has no wnids.txt: it is not the Tiny-ImageNet archive; {damaged}")
        root = listing[0][:-len("wnids.txt")]
        classes = sorted(set(archive.read(listing[0]).decode().split()))
        index = {wnid: k for k, wnid in enumerate(classes)}
        train = re.compile(re.escape(root) + r"train/([^/]+)/images/[^/]+\.JPEG")
        found = sorted((m.group(1), n) for n in names if (m := train.fullmatch(n)))
        strays = sorted({wnid for wnid, _ in found} - set(index))
        if strays or not found:
            raise RdistError(f"{path}: " + (f"training folders {strays[:3]} are not in wnids.txt" if strays else
                                            "no training images under train/<wnid>/images/") + f"; {damaged}")
        annotations = root + "val/val_annotations.txt"
        if annotations not in names:
            raise RdistError(f"{path} has no {annotations} (the validation labels); {damaged}")
        val = [line.split("\t")[:2] for line in archive.read(annotations).decode().splitlines() if line.strip()]
        unknown = sorted({wnid for _, wnid in val} - set(index))
        if unknown:
            raise RdistError(f"{path}: val_annotations.txt names classes {unknown[:3]} that wnids.txt lacks; {damaged}")
        return {"x_train": _images(archive, [n for _, n in found], path),
                "y_train": np.array([index[wnid] for wnid, _ in found], np.int64),
                "x_test": _images(archive, [f"{root}val/images/{file}" for file, _ in val], path),
                "y_test": np.array([index[wnid] for _, wnid in val], np.int64),
                "classes": np.array(classes)}


def tiny_imagenet_arrays(root: Path, url: str | None = None) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): from the cache under `root`, else parsed from the archive, which is
    downloaded from `url` (default: the official one) if it is not there."""
    folder = root / "tiny-imagenet"
    cache = folder / CACHE
    if not cache.is_file():
        archive = folder / ARCHIVE
        if not archive.is_file():
            url = url or URL
            download(url, archive, f"could not download tiny-imagenet from {url}",
                     f"offline, download it elsewhere and save it as {archive} (or set RDIST_CACHE), then run again")
        arrays = parse_archive(archive)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as out:
                np.savez(out, **arrays)
    try:
        with np.load(cache, allow_pickle=False) as saved:
            arrays = {k: saved[k] for k in ("x_train", "y_train", "x_test", "y_test", "classes")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise RdistError(f"the Tiny-ImageNet cache {cache} is unreadable ({first_line(exc)}); delete it and run "
                         "again to parse the archive anew") from None
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]
