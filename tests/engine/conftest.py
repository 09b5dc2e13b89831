"""Teachers for engine tests: trained by the engine itself on digits in seconds, or random-weight artifacts.

Every test runs on one CPU thread (tests/conftest.py): that keeps the float reduction order the same in every process
(the exact-resume test compares weights across processes) and avoids oversubscribing small shared machines.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rdist
from rdist.engine import TrainConfig, train


@pytest.fixture(scope="session")
def robust_teacher(tmp_path_factory) -> Path:
    """smallcnn adversarially trained with TRADES on digits: about 85% clean, 75% PGD-20 accuracy on validation."""
    result = train(TrainConfig(method="trades", student="smallcnn", data="digits", epochs=4, batch_size=64,
                               lr=0.05, attack_steps=5, eval_n=64, out=str(tmp_path_factory.mktemp("trades"))))
    return result.best_path


@pytest.fixture(scope="session")
def natural_teacher(tmp_path_factory) -> Path:
    """smallcnn trained naturally on digits, the Tstd of AKD2 and IAD-II."""
    result = train(TrainConfig(method="natural", student="smallcnn", data="digits", epochs=3, batch_size=64,
                               lr=0.05, eval_n=64, out=str(tmp_path_factory.mktemp("natural"))))
    return result.best_path


def _random_teacher_file(path: Path, seed: int) -> str:
    torch.manual_seed(seed)
    model = rdist.create_model("smallcnn", num_classes=10, in_channels=1)
    return str(rdist.save_model(model, path, dataset="digits", input_shape=[1, 8, 8]))


@pytest.fixture(scope="session")
def teacher_files(tmp_path_factory) -> dict[str, str]:
    """Teacher files by role (robust, natural): two smallcnn digits artifacts with random weights (seeds 1 and 2),
    for tests that count or walk a step rather than judge what it learns."""
    directory = tmp_path_factory.mktemp("random-teachers")
    return {"robust": _random_teacher_file(directory / "robust.safetensors", 1),
            "natural": _random_teacher_file(directory / "natural.safetensors", 2)}


@pytest.fixture
def short_run(robust_teacher):
    """Builds the config of a distillation run of a tinycnn student on digits: a second or so per epoch."""

    def config(out: Path, method: str = "rslad", teachers: dict[str, str | None] | None = None,
               **overrides) -> TrainConfig:
        """`teachers` adds roles to the robust teacher, or replaces it; a role set to None is left out."""
        roles = {role: spec for role, spec in {"robust": str(robust_teacher), **(teachers or {})}.items()
                 if spec is not None}
        values = dict(method=method, student="tinycnn", data="digits", teachers=roles, epochs=2,
                      batch_size=64, attack_steps=3, eval_n=64, out=str(out))
        return TrainConfig(**{**values, **overrides})

    return config


@pytest.fixture(scope="session")
def generated_digits(tmp_path_factory) -> dict[str, Path]:
    """Stand-ins for generated digits, 600 of them (the training digits shifted by a pixel, with noise), in the two
    layouts `--extra-data` reads: "deepmind" (image N x H x W x C, label: DeepMind's and the EDM sets' layout) and
    "rdist" (x_train N x C x H x W, y_train)."""
    import numpy as np

    from rdist.data import load_dataset

    digits = load_dataset("digits")
    rng = np.random.default_rng(0)
    images = np.roll(digits.x_train.numpy()[:600].astype(np.int16), 1, axis=3) + rng.integers(-20, 21, (600, 1, 8, 8))
    images, labels = images.clip(0, 255).astype(np.uint8), digits.y_train.numpy()[:600]
    directory = tmp_path_factory.mktemp("generated-digits")
    np.savez(directory / "digits_ddpm.npz", image=images.transpose(0, 2, 3, 1), label=labels)
    np.savez(directory / "digits_rdist.npz", x_train=images, y_train=labels.astype(np.int64))
    return {"deepmind": directory / "digits_ddpm.npz", "rdist": directory / "digits_rdist.npz"}
