"""Helpers shared by tests: where the shared data lives, one CPU thread, a few-second training, and the check
of a one-line CLI error."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import rdist
from rdist.data import Batches

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CIFAR_SUBSET = SHARED / "data" / "cifar10-subset.npz"


def requires_cifar_subset():
    return pytest.mark.skipif(not CIFAR_SUBSET.is_file(),
                              reason=f"the shared CIFAR-10 subset is not at {CIFAR_SUBSET} (a clone without ../shared)")


def assert_one_line_error(result, *fragments: str, code: int = 1) -> None:
    """A CLI `result` that failed with exit code `code` (1: bad input, 2: bad usage) and a single `error: ...`
    line containing every fragment."""
    assert result.exit_code == code, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@contextlib.contextmanager
def one_thread():
    """Torch on one CPU thread inside the block.

    Two threads on two shared cores spin-wait on each other, so one thread makes tests several times faster;
    it also keeps the float reduction order the same in every process.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


Attack = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def train_briefly(arch: str, dataset, steps: int = 300, seed: int = 0, attack: Attack | None = None):
    """Cross-entropy training of `arch` on `dataset` for `steps` SGD steps: seconds on a CPU.

    With `attack(model, x, y)`, on its adversarial inputs instead (the model in eval mode while it runs).
    """
    torch.manual_seed(seed)
    model = rdist.create_model(arch, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = Batches(dataset.x_train, dataset.y_train, 128, shuffle=True, augment=False, seed=seed)
    done = 0
    while done < steps:
        batches.set_epoch(done)
        for x, y in batches:
            if attack is not None:
                model.eval()
                x = attack(model, x, y)
            model.train()
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return model.eval()


def randomise_batchnorm(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine weights, so that eval-mode outputs test them too."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.3, 0.3)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    return model
