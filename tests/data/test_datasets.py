import numpy as np
import pytest
import torch

import rdist
from rdist.data import DATASETS, Batches, augment, dataset_shape, num_classes, train_size
from rdist.errors import RdistError
from tests.helpers import CIFAR_SUBSET, requires_cifar_subset


def test_digits_are_uint8_nchw_with_a_fixed_split(digits):
    assert digits.x_train.dtype == torch.uint8 and digits.input_shape == (1, 8, 8)
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert digits.num_classes == 10 and int(digits.x_train.max()) == 255
    again = rdist.load_dataset("digits")
    assert torch.equal(again.x_test, digits.x_test)


def test_the_facts_known_without_loading_are_those_of_the_loaded_data(digits):
    # digits is the named dataset every machine can load; the others' facts are their published sizes.
    assert dataset_shape("digits") == (digits.input_shape[0], digits.num_classes, digits.input_shape[-1])
    assert train_size("digits") == len(digits.y_train) and num_classes("digits") == digits.num_classes
    assert {name: (f.channels, f.classes, f.size, f.train_images) for name, f in DATASETS.items() if name != "digits"} \
        == {"cifar10": (3, 10, 32, 50_000), "cifar100": (3, 100, 32, 50_000), "svhn": (3, 10, 32, 73_257),
            "tiny-imagenet": (3, 200, 64, 100_000)}


@requires_cifar_subset()
def test_npz_cifar_subset_loads_as_documented():
    data = rdist.load_dataset(f"npz:{CIFAR_SUBSET}")
    assert data.x_train.shape == (5085, 3, 32, 32) and data.x_test.shape == (1017, 3, 32, 32)
    assert data.num_classes == 10
    assert dataset_shape(f"npz:{CIFAR_SUBSET}") == (3, 10, 32)


def test_validation_split_is_deterministic_and_disjoint(digits):
    a = digits.validation_split(0.2, seed=3)
    b = digits.validation_split(0.2, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert len(a[3]) == round(0.2 * len(digits.y_train)) and len(a[1]) + len(a[3]) == len(digits.y_train)
    train_rows = {bytes(r) for r in a[0].flatten(1).numpy()}
    # digits has duplicate images, so count distinct rows: most validation images are unseen in training.
    unseen = sum(bytes(r) not in train_rows for r in a[2].flatten(1).numpy())
    assert unseen > 0.8 * len(a[2])


def test_augment_crops_and_flips_on_tensors():
    images = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).reshape(2, 1, 4, 4)
    out = augment(images, padding=0, generator=torch.Generator().manual_seed(0))
    # with no padding the crop is the identity, so each image is itself or its mirror
    for original, got in zip(images, out):
        assert torch.equal(got, original) or torch.equal(got, original.flip(-1))
    padded = augment(images.repeat(64, 1, 1, 1), padding=2, generator=torch.Generator().manual_seed(0))
    assert padded.shape == (128, 1, 4, 4)
    assert (padded == 0).any(), "4-pixel-style zero padding must show up in some crops"


def test_batches_are_seeded_per_epoch(digits):
    loader = Batches(digits.x_train, digits.y_train, 100, shuffle=True, augment=True, seed=7)
    loader.set_epoch(2)
    first = [x for x, _ in loader]
    loader.set_epoch(1)
    other = next(iter(loader))[0]
    loader.set_epoch(2)
    assert all(torch.equal(a, b) for a, (b, _) in zip(first, loader))
    assert not torch.equal(first[0], other)
    assert first[0].dtype == torch.float32 and 0 <= first[0].min() and first[0].max() <= 1


def test_npz_errors_name_the_problem(tmp_path):
    with pytest.raises(RdistError, match="not found"):
        rdist.load_dataset(f"npz:{tmp_path / 'nope.npz'}")
    bad = tmp_path / "bad.npz"
    np.savez(bad, x_train=np.zeros((2, 3, 4, 4), np.uint8))
    with pytest.raises(RdistError, match="lacks arrays"):
        rdist.load_dataset(f"npz:{bad}")


def test_unknown_dataset_suggests_close_names():
    with pytest.raises(RdistError, match="cifar10"):
        rdist.load_dataset("cifar11")


def test_offline_download_error_says_where_to_put_files(tmp_path, monkeypatch):
    import torchvision

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(RdistError, match=str(tmp_path / "cifar10")):
        rdist.load_dataset("cifar10", root=tmp_path)
