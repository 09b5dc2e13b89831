"""Schedules: the papers' recipes, their shortened versions, and the short-run defaults."""

from __future__ import annotations

import pytest
import torch

from rdist.engine import TrainConfig, resolve_schedule
from rdist.engine.schedule import build_optimizer
from rdist.errors import RdistError
from rdist.methods import create_method


def schedule(method: str, **config):
    return resolve_schedule(TrainConfig(method=method, student="tinycnn", **config), create_method(method).recipe)


def test_paper_recipes_follow_the_spec():
    akd2 = schedule("akd2", recipe="paper")
    assert (akd2.epochs, akd2.milestones, akd2.weight_decay, akd2.swa_start) == (200, (50, 150), 5e-4, 55)
    rslad = schedule("rslad", recipe="paper")
    assert (rslad.epochs, rslad.milestones, rslad.lr, rslad.batch_size) == (300, (215, 260, 285), 0.1, 128)
    # IGDM's own recipe, whatever the base.
    assert schedule("rslad+igdm", recipe="paper").milestones == (100, 150)


def test_a_shortened_paper_recipe_keeps_its_proportions_and_explicit_values_win():
    akd2 = schedule("akd2", recipe="paper", epochs=20, lr=0.05)
    assert (akd2.milestones, akd2.swa_start, akd2.lr) == ((5, 15), 6, 0.05)


def test_short_run_defaults():
    s = schedule("trades", epochs=8)
    assert (s.milestones, s.lr, s.batch_size, s.weight_decay, s.swa_start) == ((4, 6), 0.1, 128, 2e-4, None)
    with pytest.raises(RdistError, match="--epochs N.*--recipe paper"):
        schedule("trades")
    with pytest.raises(RdistError, match="unknown recipe 'papers' \\(did you mean: paper"):
        schedule("trades", recipe="papers")


def test_lr_falls_tenfold_after_each_milestone_epoch():
    s = schedule("sat", epochs=4)  # milestones (2, 3)
    optimizer, scheduler = build_optimizer(torch.nn.Linear(2, 2), s)
    lrs = []
    for _ in range(s.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert optimizer.param_groups[0]["momentum"] == 0.9
