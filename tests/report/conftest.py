"""Real artifacts for the report tests, trained for seconds on digits: a natural and an adversarially trained
tinycnn, a 5-class model, and a training run written by the engine (log.jsonl, best/last.safetensors)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rdist
from rdist.attacks import pgd
from tests.helpers import train_briefly

# Digits have 17 grey levels (steps of about 16/255): 8/255 moves no pixel across a level, 32/255 does.
EPS = "32/255"
EPS_VALUE = 32 / 255
DIGITS_SHAPE = [1, 8, 8]


def train_adversarial(arch: str, dataset, steps: int = 150, seed: int = 0):
    """Madry adversarial training with a 3-step PGD at EPS: seconds on a CPU, and visibly more robust."""
    generator = torch.Generator().manual_seed(seed)

    def attack(model, x, y):
        return pgd(lambda xa: F.cross_entropy(model(xa), y, reduction="sum"), x, eps=EPS_VALUE,
                   step_size=EPS_VALUE / 2, steps=3, generator=generator)

    return train_briefly(arch, dataset, steps, seed, attack=attack)


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("report-artifacts")


@pytest.fixture(scope="session")
def natural_artifact(digits, artifacts_dir) -> Path:
    path = artifacts_dir / "natural.safetensors"
    model = train_briefly("tinycnn", digits, steps=150)
    rdist.save_model(model, path, dataset="digits", input_shape=DIGITS_SHAPE,
                     provenance={"method": "natural", "epochs": 4})
    return path


@pytest.fixture(scope="session")
def robust_artifact(digits, artifacts_dir, natural_artifact) -> Path:
    path = artifacts_dir / "robust.safetensors"
    model = train_adversarial("tinycnn", digits)
    rdist.save_model(model, path, dataset="digits", input_shape=DIGITS_SHAPE,
                     provenance={"method": "sat", "teacher": str(natural_artifact), "epochs": 4})
    return path


@pytest.fixture(scope="session")
def five_class_artifact(artifacts_dir) -> Path:
    path = artifacts_dir / "five-classes.safetensors"
    rdist.save_model(rdist.create_model("tinycnn", num_classes=5, in_channels=1), path, dataset="digits",
                     input_shape=DIGITS_SHAPE)
    return path


@pytest.fixture(scope="session")
def run_dir(artifacts_dir) -> Path:
    """A real two-epoch run of the engine: what `rdist distill` leaves behind."""
    from rdist.engine import TrainConfig, train

    out = artifacts_dir / "run-natural"
    train(TrainConfig(method="natural", student="tinycnn", data="digits", epochs=2, batch_size=256, eval_n=50,
                      out=str(out)))
    return out
