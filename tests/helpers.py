"""Helpers shared by tests: where the shared data lives, and a few-second natural training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import rdist
from rdist.data import Batches

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CIFAR_SUBSET = SHARED / "data" / "cifar10-subset.npz"


def requires_cifar_subset():
    return pytest.mark.skipif(not CIFAR_SUBSET.is_file(),
                              reason=f"the shared CIFAR-10 subset is not at {CIFAR_SUBSET} (a clone without ../shared)")


def train_natural(arch: str, dataset, steps: int = 300, seed: int = 0):
    """A plain cross-entropy training of `arch` on `dataset` for `steps` SGD steps: seconds on a CPU."""
    torch.manual_seed(seed)
    model = rdist.create_model(arch, num_classes=dataset.num_classes, in_channels=dataset.input_shape[0])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = Batches(dataset.x_train, dataset.y_train, 128, shuffle=True, augment=False, seed=seed)
    model.train()
    done = 0
    while done < steps:
        batches.set_epoch(done)
        for x, y in batches:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            done += 1
            if done == steps:
                break
    return model.eval()
