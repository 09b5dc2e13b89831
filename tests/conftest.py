"""Fixtures shared across the suite: the `rdist` command line (`cli`), real data, and real small models trained for
seconds on digits; with the plugins below, the Hub stand-in (`hub`) and RobustBench teachers without a network
(`offline_cache`, `tiny_teacher`, ...). A fixture that tests of several folders use lives here or in a plugin, never
imported from another folder's conftest."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import rdist
from tests.helpers import Cli, train_briefly

pytest_plugins = ["tests.fixtures.hub", "tests.fixtures.robustbench"]


@pytest.fixture(scope="session", autouse=True)
def one_cpu_thread():
    """Every test and fixture on one torch CPU thread, whatever OMP_NUM_THREADS says (CI sets none).

    The models here are small: a second thread buys little on them, and on two cores that something else also
    uses, two threads spin-wait on each other (the digits model's training took 87 s instead of 26 s).
    It also keeps the float reduction order the same in every process. Subprocesses the tests start set
    OMP_NUM_THREADS=1 themselves. No test or fixture needs its own one-thread block.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def cli() -> Cli:
    """`cli(*args, env=None, code=0)` runs `rdist ARGS` in this process and checks its exit code;
    `cli.fails(args, *fragments, code=1, unchanged=())` checks a one-line refusal (tests/helpers.py:Cli)."""
    return Cli()


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
