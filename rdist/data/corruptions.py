"""Common corruptions of the CIFAR test sets: CIFAR-10-C and CIFAR-100-C (Hendrycks and Dietterich, ICLR 2019)
[https://arxiv.org/abs/1903.12261], the second board of RobustBench.

Each official archive (`CIFAR-10-C.tar`, `CIFAR-100-C.tar`, on Zenodo) holds a folder with `labels.npy` and one
`<corruption>.npy` per corruption: uint8 images N x 32 x 32 x 3, the test set corrupted at severity 1, then 2, ...
up to 5 (N = 5 x 10,000), in the test set's order. RobustBench's number is the mean accuracy over its 15
corruptions x 5 severities (robustbench.data.CORRUPTIONS; the archives hold four more, which it leaves out).

The archive is downloaded once into `<cache>/data/<dataset>-c/`, its 16 files extracted (into a temporary folder,
renamed into place when whole), and the archive deleted: later runs memory-map the arrays, so an evaluation reads
only the images it attacks.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rdist.errors import RdistError
from rdist.files import cache_dir, download
from rdist.utils import first_line

# RobustBench's 15, in its order (robustbench/data.py, CORRUPTIONS).
CORRUPTIONS = ("shot_noise", "motion_blur", "snow", "pixelate", "gaussian_noise", "defocus_blur", "brightness", "fog",
               "zoom_blur", "frost", "glass_blur", "impulse_noise", "contrast", "jpeg_compression",
               "elastic_transform")
SEVERITIES = 5


@dataclass(frozen=True)
class CorruptionSet:
    """Where a dataset's corrupted test set comes from: the folder its archive holds and the archive's URL."""

    folder: str
    url: str
    gigabytes: float

    @property
    def archive(self) -> str:
        return f"{self.folder}.tar"


SETS = {
    "cifar10": CorruptionSet("CIFAR-10-C", "https://zenodo.org/records/2535967/files/CIFAR-10-C.tar", 2.9),
    "cifar100": CorruptionSet("CIFAR-100-C", "https://zenodo.org/records/3555552/files/CIFAR-100-C.tar", 2.9),
}
FILES = ("labels.npy", *(f"{c}.npy" for c in CORRUPTIONS))


class CorruptedImages:
    """The arrays of one extracted corruption set, memory-mapped: `images(corruption, severity, rows)` reads the
    rows of the test set at that corruption and severity."""

    def __init__(self, directory: Path, name: str):
        self.directory, self.name = directory, name
        self.labels = self._load("labels.npy")
        if self.labels.ndim != 1 or len(self.labels) % SEVERITIES:
            raise RdistError(f"{directory / 'labels.npy'} holds {self.labels.shape}, not one label per image of "
                             f"{SEVERITIES} severities; {self._fix()}")
        self.per_severity = len(self.labels) // SEVERITIES
        self.arrays = {c: self._load(f"{c}.npy", mmap=True) for c in CORRUPTIONS}
        for corruption, array in self.arrays.items():
            if array.dtype != np.uint8 or array.ndim != 4 or len(array) != len(self.labels):
                raise RdistError(f"{directory / (corruption + '.npy')} holds {array.dtype} {array.shape}, not "
                                 f"{len(self.labels)} uint8 images (N, H, W, C); {self._fix()}")

    def _fix(self) -> str:
        return f"delete {self.directory} and run again to download {self.name} anew"

    def _load(self, file: str, mmap: bool = False) -> np.ndarray:
        try:
            return np.load(self.directory / file, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise RdistError(f"cannot read {self.directory / file} ({first_line(exc)}); {self._fix()}") from None

    def check_labels(self, y: torch.Tensor) -> None:
        """Refuse test images that are not the first of the set's test set, in its order (the corrupted images
        would then be of other pictures)."""
        n = len(y)
        if n > self.per_severity:
            raise RdistError(f"{self.name} holds {self.per_severity} images per severity, fewer than the {n} test "
                             f"images asked for; pass --n {self.per_severity} or less")
        if not np.array_equal(self.labels[:n], y.cpu().numpy()):
            raise RdistError(f"the labels of the first {n} test images differ from {self.name}'s: these test "
                             f"images are not the {self.name.removesuffix('-C')} test set in its order; evaluate "
                             "corruptions on the dataset's own test set")

    def images(self, corruption: str, severity: int, rows: slice) -> torch.Tensor:
        """uint8 (N, C, H, W) images `rows` of the test set at `corruption` and `severity` (1 to 5)."""
        offset = (severity - 1) * self.per_severity
        block = self.arrays[corruption][offset + rows.start:offset + rows.stop]
        return torch.from_numpy(np.ascontiguousarray(block.transpose(0, 3, 1, 2)))


def corrupted_images(dataset: str, root: str | Path | None = None, url: str | None = None) -> CorruptedImages:
    """The corruption set of `dataset` (cifar10, cifar100), downloaded and extracted on first use into
    `<root>/<dataset>-c/` (root: rdist's data cache)."""
    if dataset not in SETS:
        raise RdistError(f"common corruptions exist for {' and '.join(SETS)} (CIFAR-10-C, CIFAR-100-C), not "
                         f"'{dataset}'")
    source = SETS[dataset]
    home = (Path(root) if root else cache_dir() / "data") / f"{dataset}-c"
    directory = home / source.folder
    if not all((directory / f).is_file() for f in FILES):
        archive = home / source.archive
        if not archive.is_file():
            _download(url or source.url, archive, source, directory)
        _extract(archive, home, source)
        archive.unlink()
    return CorruptedImages(directory, source.folder)


def _download(url: str, archive: Path, source: CorruptionSet, directory: Path) -> None:
    download(url, archive, f"could not download {source.folder} from {url}",
             f"offline, download {source.archive} ({source.gigabytes} GB) elsewhere and save it as {archive}, or "
             f"extract {', '.join(FILES)} into {directory} (or set RDIST_CACHE), then run again")


def _extract(archive: Path, home: Path, source: CorruptionSet) -> None:
    """The 16 files RobustBench reads, from the archive into home/<folder>, whole or not at all: extracted into a
    private temporary folder (named as rdist.files.atomic_path names its own) renamed into place at the end."""
    damaged = f"delete {archive} and run again to download it anew"
    work = home / f".{source.folder}.{secrets.token_hex(8)}.tmp"
    try:
        work.mkdir(parents=True)
        with tarfile.open(archive) as tar:
            members = {Path(m.name).name: m for m in tar.getmembers()
                       if m.isfile() and Path(m.name).parent.name == source.folder}
            missing = [f for f in FILES if f not in members]
            if missing:
                raise RdistError(f"{archive} lacks {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''} "
                                 f"under {source.folder}/; {damaged}")
            for file in FILES:
                with tar.extractfile(members[file]) as data, open(work / file, "wb") as out:
                    shutil.copyfileobj(data, out, 1 << 20)
        target = home / source.folder
        if target.exists():  # an earlier, incomplete copy placed by hand
            shutil.rmtree(target)
        os.replace(work, target)
    except (tarfile.TarError, EOFError) as exc:
        raise RdistError(f"{archive} is not a readable tar archive ({first_line(exc)}); {damaged}") from None
    except OSError as exc:
        raise RdistError(f"cannot extract {archive} into {home} ({first_line(exc)}); free some disk space or set "
                         "RDIST_CACHE elsewhere") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
