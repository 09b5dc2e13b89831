"""Dataset registry: torchvision sets (cached downloads), Tiny-ImageNet, scikit-learn digits, and `npz:PATH` files.

Every dataset becomes uint8 NCHW images and int64 labels, moved to the compute device once, so that
training and attacks never copy from host memory on the hot path.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rdist.data.tiny_imagenet import tiny_imagenet_arrays
from rdist.errors import RdistError
from rdist.files import cache_dir
from rdist.utils import first_line, unknown


@dataclass
class Dataset:
    name: str
    x_train: torch.Tensor  # uint8 (N, C, H, W)
    y_train: torch.Tensor  # int64 (N,)
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device | str) -> "Dataset":
        moved = {k: getattr(self, k).to(device) for k in ("x_train", "y_train", "x_test", "y_test")}
        return Dataset(self.name, num_classes=self.num_classes, **moved)

    def validation_split(self, size: int | float = 0.1, seed: int = 0):
        """A deterministic (train_x, train_y, val_x, val_y) split of the training data.

        The same seed always holds out the same images, so checkpoint selection on validation
        never touches the test set.
        """
        n = len(self.y_train)
        n_val = int(round(size * n)) if isinstance(size, float) else int(size)
        if not 0 < n_val < n:
            raise RdistError(f"validation size {size} leaves no data on one side of the split of {n} images")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).to(self.x_train.device)
        val, train = order[:n_val], order[n_val:]
        return self.x_train[train], self.y_train[train], self.x_train[val], self.y_train[val]


DATA_DIR_ENV = "RDIST_DATA_DIR"  # a shared dataset folder (torchvision's root), as --data-dir names one

# Labels beyond this are a corrupted file, not a task: the model would get that many outputs.
MAX_CLASSES = 100_000
SPLITS = ("x_train", "y_train", "x_test", "y_test")


def _from_numpy(name, x_train, y_train, x_test, y_test, num_classes=None) -> Dataset:
    """The dataset of four arrays, each checked: uint8 NCHW images with the same image shape in both splits,
    one integer label in [0, num_classes) per image, no empty split."""
    arrays = dict(zip(SPLITS, (np.asarray(a) for a in (x_train, y_train, x_test, y_test))))
    fix = "it needs uint8 NCHW images x_train/x_test and integer labels y_train/y_test, one per image"
    for split in ("train", "test"):
        images, labels = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if images.dtype != np.uint8 or images.ndim != 4 or 0 in images.shape[1:]:
            raise RdistError(f"dataset '{name}': x_{split} must be uint8 NCHW images, got {images.dtype} "
                             f"{images.shape}; {fix}")
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise RdistError(f"dataset '{name}': y_{split} must be a 1-D array of integer class labels, got "
                             f"{labels.dtype} {labels.shape}; {fix}")
        if len(labels) != len(images):
            raise RdistError(f"dataset '{name}': x_{split} has {len(images)} images but y_{split} has "
                             f"{len(labels)} labels; {fix}")
        if len(labels) == 0:
            raise RdistError(f"dataset '{name}': the {split} split is empty; {fix}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise RdistError(f"dataset '{name}': train images are {arrays['x_train'].shape[1:]} but test images are "
                         f"{arrays['x_test'].shape[1:]} (C, H, W); both splits need the same image shape")
    low = min(int(arrays["y_train"].min()), int(arrays["y_test"].min()))
    high = max(int(arrays["y_train"].max()), int(arrays["y_test"].max()))
    limit = num_classes or MAX_CLASSES
    if low < 0 or high >= limit:
        bad = low if low < 0 else high
        raise RdistError(f"dataset '{name}': label {bad} is outside [0, {limit}); labels are class indices "
                         f"0..C-1")
    tensors = {k: torch.as_tensor(np.ascontiguousarray(a.astype(np.int64) if k[0] == "y" else a))
               for k, a in arrays.items()}
    return Dataset(name, tensors["x_train"], tensors["y_train"], tensors["x_test"], tensors["y_test"],
                   num_classes or high + 1)


def _digits(root: Path, classes: int) -> Dataset:
    """scikit-learn's 1797 8x8 digits, 17 grey levels (0-16) scaled to 0-255; a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    order = np.random.default_rng(0).permutation(len(images))
    n_test = len(images) // 5
    test, train = order[:n_test], order[n_test:]
    return _from_numpy("digits", images[train], digits.target[train], images[test], digits.target[test], classes)


def _torchvision(name: str, cls_name: str, split_kw: Callable[[bool], dict]):
    def load(root: Path, classes: int) -> Dataset:
        import torchvision

        cls = getattr(torchvision.datasets, cls_name)
        try:  # a folder laid out as torchvision's root (ROOT/cifar-10-batches-py: timm's --data-dir, a cluster's copy)
            train, test = (cls(str(root), download=False, **split_kw(is_train)) for is_train in (True, False))
        except RuntimeError:  # "Dataset not found or corrupted": rdist's own layout, ROOT/<name>, downloaded once
            pass
        else:
            return _torchvision_arrays(name, train, test, classes)
        folder = root / name
        try:
            train, test = (cls(str(folder), download=True, **split_kw(is_train)) for is_train in (True, False))
        except Exception as exc:  # torchvision raises URLError, RuntimeError or OSError when offline
            raise RdistError(
                f"could not download {name} into {folder} ({type(exc).__name__}: {exc}); offline, place the "
                f"official archive files in {folder} (or point --data-dir, RDIST_DATA_DIR or RDIST_CACHE elsewhere) "
                "and run again"
            ) from None
        return _torchvision_arrays(name, train, test, classes)

    return load


def _torchvision_arrays(name: str, train, test, classes: int) -> Dataset:
    arrays = []
    for split in (train, test):
        images = np.asarray(split.data)
        if images.ndim == 4 and images.shape[-1] == 3:  # CIFAR stores NHWC
            images = images.transpose(0, 3, 1, 2)
        labels = np.asarray(getattr(split, "targets", None) if hasattr(split, "targets") else split.labels)
        arrays += [images, labels]
    return _from_numpy(name, *arrays, num_classes=classes)


def _tiny_imagenet(root: Path, classes: int) -> Dataset:
    return _from_numpy("tiny-imagenet", *tiny_imagenet_arrays(root), num_classes=classes)


def _npz(path: str) -> Dataset:
    file = Path(path).expanduser()
    if not file.is_file():
        raise RdistError(f"npz dataset file not found: {file} "
                         "(give --data npz:PATH to a file with x_train/y_train/x_test/y_test)")
    what = "a NumPy .npz archive of x_train, y_train, x_test, y_test (numpy.savez)"
    try:
        # allow_pickle=False: an object array could run code when unpickled; image data never needs one.
        loaded = np.load(file, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise RdistError(f"npz dataset {file} holds a single array, not {what}")
        with loaded as arrays:
            missing = set(SPLITS) - set(arrays.files)
            if missing:
                raise RdistError(f"npz dataset {file} lacks arrays {sorted(missing)}; "
                                 "it needs x_train, y_train, x_test, y_test (uint8 NCHW images)")
            splits = [arrays[k] for k in SPLITS]
    except ValueError as exc:
        if "pickle" in str(exc):
            raise RdistError(f"npz dataset {file} holds pickled Python objects (or is not a NumPy file at all); "
                             f"rdist never unpickles data files: give {what} with numeric arrays") from None
        raise RdistError(f"npz dataset {file} is unreadable ({first_line(exc)}); give {what}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise RdistError(f"npz dataset {file} is unreadable ({first_line(exc)}); is it empty or truncated? "
                         f"give {what}") from None
    return _from_numpy(f"npz:{file}", *splits)


def npz_file(name: str) -> Path | None:
    """The file an `npz:PATH` dataset name reads, or None for a named dataset."""
    return Path(name[4:]).expanduser() if name.startswith("npz:") else None


@dataclass(frozen=True)
class DatasetFacts:
    """What rdist knows of a named dataset without loading it, and how to load it."""

    channels: int
    classes: int
    size: int  # images are size x size
    train_images: int  # images in the training split (before rdist holds out a validation split)
    load: Callable[[Path, int], Dataset]  # (root of the datasets: `data_root`, classes) -> the dataset


# Every named dataset: one entry here is all a new dataset needs.
DATASETS: dict[str, DatasetFacts] = {
    "cifar10": DatasetFacts(3, 10, 32, 50_000, _torchvision("cifar10", "CIFAR10", lambda train: {"train": train})),
    "cifar100": DatasetFacts(3, 100, 32, 50_000, _torchvision("cifar100", "CIFAR100", lambda train: {"train": train})),
    "svhn": DatasetFacts(3, 10, 32, 73_257,
                         _torchvision("svhn", "SVHN", lambda train: {"split": "train" if train else "test"})),
    "tiny-imagenet": DatasetFacts(3, 200, 64, 100_000, _tiny_imagenet),  # validation split as the test split
    "digits": DatasetFacts(1, 10, 8, 1438, _digits),  # its fixed 80% split of 1797
}


def train_size(name: str) -> int:
    """Images in the training split of dataset `name`; an npz file is opened to find out."""
    if name in DATASETS:
        return DATASETS[name].train_images
    if name.startswith("npz:"):
        return len(_npz(name[4:]).y_train)
    raise unknown("dataset", name, list_datasets())


def dataset_shape(name: str) -> tuple[int, int, int]:
    """(channels, classes, image size) of dataset `name`; an npz file is opened to find out."""
    if name in DATASETS:
        facts = DATASETS[name]
        return facts.channels, facts.classes, facts.size
    if name.startswith("npz:"):
        data = _npz(name[4:])
        return data.input_shape[0], data.num_classes, data.input_shape[-1]
    raise unknown("dataset", name, list_datasets())


def num_classes(name: str) -> int:
    """Classes of dataset `name`."""
    return dataset_shape(name)[1]


def list_datasets() -> list[str]:
    return [*DATASETS, "npz:PATH"]


def data_root(root: str | Path | None = None) -> Path:
    """The folder named datasets are read from and downloaded to: `root` (--data-dir), else $RDIST_DATA_DIR, else
    rdist's cache. A dataset lies in ROOT/<name> (ROOT/cifar10/cifar-10-batches-py), where it is downloaded; a
    torchvision set is also found where torchvision's own root puts it (ROOT/cifar-10-batches-py)."""
    root = root or os.environ.get(DATA_DIR_ENV)
    return Path(root).expanduser() if root else cache_dir() / "data"


def load_dataset(name: str, root: str | Path | None = None, device: torch.device | str = "cpu") -> Dataset:
    """Load a dataset by name (`cifar10`, `cifar100`, `svhn`, `tiny-imagenet`, `digits`, `npz:PATH`) onto `device`;
    `root` is the folder of datasets to read (or download) a named one in (see `data_root`)."""
    if name.startswith("npz:"):
        dataset = _npz(name[4:])
    elif name in DATASETS:
        facts = DATASETS[name]
        dataset = facts.load(data_root(root), facts.classes)
    else:
        raise unknown("dataset", name, list_datasets())
    return dataset.to(device)
