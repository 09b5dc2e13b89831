"""Weight averages (`rdist.engine.averaging`): the EMA against a float64 reference of the official update with its
warm-up decay, its BatchNorm statistics the live model's, its state through a checkpoint; SWA's plain mean."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rdist.engine.averaging import EMA, SWA, ema_decay, weight_average


def model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


def sgd_like_steps(student: nn.Module, steps: int, seed: int = 1):
    """Moves the weights as training would (random steps) and runs BN in train mode; yields after each step."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        with torch.no_grad():
            for p in student.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
        student.train()(torch.randn(16, 4, generator=generator))  # BN's running statistics move too
        yield


@pytest.mark.parametrize("decay", [0.5, 0.995])
def test_ema_is_the_official_update_with_its_warm_up_decay(decay):
    student = model()
    ema = EMA(student, decay)
    # float64 reference: avg_0 = the initial weights; after step t (0-based) avg = d avg + (1 - d) w,
    # d = min(decay, (1 + t) / (10 + t)) (DeepMind's ema_update)
    expected = [p.detach().double().clone() for p in student.parameters()]
    for t, _ in enumerate(sgd_like_steps(student, 14)):
        ema.after_step()
        d = min(decay, (1 + t) / (10 + t))
        expected = [d * e + (1 - d) * p.detach().double() for e, p in zip(expected, student.parameters())]
        for got, want in zip(ema.averaged.module.parameters(), expected):
            torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    assert int(ema.averaged.n_averaged) == 15  # the initial weights and 14 steps
    # The warm-up's decays, the first ones below the cap: 0.1, 0.18, ... and the cap once (1 + t) / (10 + t) reaches it.
    assert [round(ema_decay(0.5, n), 4) for n in (1, 2, 3, 9, 10)] == [0.1, 0.1818, 0.25, 0.5, 0.5]


def test_ema_is_evaluated_with_the_live_batch_norm_statistics_and_not_the_live_weights():
    student = model()
    ema = EMA(student, 0.9)
    for _ in sgd_like_steps(student, 3):
        ema.after_step()
    averaged = ema.model(refresh_batches=lambda: pytest.fail("the EMA recomputes no statistics"))
    for mine, live in zip(averaged.buffers(), student.buffers()):
        assert torch.equal(mine, live)
    assert not torch.equal(averaged[0].weight, student[0].weight)
    assert weight_average(student, {"kind": "ema", "decay": 0.9}).describe() == {"kind": "ema", "decay": 0.9}


def test_an_ema_restored_from_its_state_continues_exactly():
    student = model()
    whole = EMA(student, 0.99)
    for _ in sgd_like_steps(student, 3, seed=1):
        whole.after_step()
    # A resumed run: its live weights loaded from the checkpoint, its EMA built over them, then its state loaded.
    resumed = copy.deepcopy(student)
    restored = EMA(resumed, 0.99)
    restored.load_state_dict(copy.deepcopy(whole.state_dict()))
    for _, _ in zip(sgd_like_steps(student, 3, seed=2), sgd_like_steps(resumed, 3, seed=2)):
        whole.after_step()
        restored.after_step()
    for a, b in zip(whole.averaged.module.parameters(), restored.averaged.module.parameters()):
        assert torch.equal(a, b)
    assert int(restored.averaged.n_averaged) == 7


def test_swa_is_the_mean_of_the_epochs_from_its_start():
    student = model()
    swa = SWA(student, start=2)
    snapshots = []
    for epoch, _ in enumerate(sgd_like_steps(student, 4), 1):
        swa.after_step()  # SWA averages at epoch ends only
        swa.after_epoch(epoch)
        if epoch >= 2:
            snapshots.append([p.detach().double().clone() for p in student.parameters()])
        assert swa.active(epoch) == (epoch >= 2)
    mean = [torch.stack(group).mean(0) for group in zip(*snapshots)]
    for got, want in zip(swa.averaged.module.parameters(), mean):
        torch.testing.assert_close(got.double(), want, rtol=1e-6, atol=1e-6)
    assert swa.describe() == {"kind": "swa", "start": 2} and weight_average(student, None) is None
