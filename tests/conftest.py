"""Fixtures shared across the suite: real data, and real small models trained for seconds on digits."""

from __future__ import annotations

from pathlib import Path

import pytest

import rdist
from tests.helpers import train_briefly


@pytest.fixture(scope="session")
def digits():
    return rdist.load_dataset("digits")


@pytest.fixture(scope="session")
def digits_model(digits):
    """smallcnn trained naturally on digits for a few seconds: accurate and not robust."""
    return train_briefly("smallcnn", digits)


@pytest.fixture(scope="session")
def digits_artifact(digits_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("artifacts") / "digits-smallcnn.safetensors"
    rdist.save_model(digits_model, path, dataset="digits", input_shape=[1, 8, 8],
                     provenance={"method": "natural", "epochs": 1})
    return path
