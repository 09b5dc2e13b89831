"""Fixtures shared across the suite: real data, and real small models trained for seconds on digits."""

from __future__ import annotations

from pathlib import Path

import pytest

import rdist
from tests.helpers import one_thread, train_briefly


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread():
    """Every test and fixture on one torch CPU thread, whatever OMP_NUM_THREADS says (CI sets none).

    The models here are small: a second thread buys little on them, and on two cores that something else also
    uses, two threads spin-wait on each other (the digits model's training took 87 s instead of 26 s).
    Subprocesses the tests start set OMP_NUM_THREADS=1 themselves.
    """
    with one_thread():
        yield


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
