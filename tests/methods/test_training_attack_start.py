"""Training attacks start at the raw x + noise, as their official training codes do; evaluation attacks, SAT (IAD's
AT.py, Madry's code) and AKD2 (advertorch's LinfPGDAttack with rand_init) clamp the start to [0, 1]."""

import pytest
import torch

from rdist.attacks.pgd import PGD, random_start
from rdist.methods.base import Step
from rdist.methods.registry import create_method

EPS = 8 / 255
UNCLAMPED = ["trades", "mart", "ard", "iad-i", "iad-ii", "rslad", "adaad", "dgad", "saad", "ard+igdm"]
UNCLAMPED += ["peeraid"]  # its attack against the peer (tests/methods/test_peeraid.py)


@pytest.fixture
def edge_batch(inputs, teacher, natural_teacher, peer):
    """The fixed batch with a third of its pixels set to exactly 0 or 1, as saturated CIFAR pixels are."""
    x, y = inputs
    x = x.clone()
    x.view(-1)[::3] = (torch.arange(x.numel())[::3] % 2).float()
    return Step(x=x, y=y, epoch=1, epochs=10, teachers={"robust": teacher, "natural": natural_teacher},
                generator=torch.Generator().manual_seed(0), companions={"peer": peer})


@pytest.mark.parametrize("name", UNCLAMPED)
def test_training_attacks_start_outside_the_box_where_the_noise_takes_them(student, edge_batch, name):
    start = create_method(name, attack_steps=0).perturb(student, edge_batch)
    assert start.min() < 0 and start.max() > 1  # saturated pixels pushed out by the noise, not clamped back
    assert (start - edge_batch.x).abs().amax() <= EPS + 1e-6


@pytest.mark.parametrize("name", UNCLAMPED)
def test_the_first_step_brings_every_training_attack_back_into_the_box(student, edge_batch, name, check_in_ball):
    check_in_ball(create_method(name, attack_steps=1).perturb(student, edge_batch), edge_batch.x, EPS)


def test_sat_and_evaluation_pgd_clamp_the_start(student, edge_batch, check_in_ball):
    check_in_ball(create_method("sat", attack_steps=0).perturb(student, edge_batch), edge_batch.x, EPS)
    # The IGDM code's own ARD (`--recipe paper` of ard+igdm): its PGD clamps the uniform start.
    check_in_ball(create_method("ard+igdm", attack_steps=0, igdm_code_ard=True).perturb(student, edge_batch),
                  edge_batch.x, EPS)
    check_in_ball(PGD(student, EPS, steps=0, generator=torch.Generator().manual_seed(0))(edge_batch.x, edge_batch.y),
                  edge_batch.x, EPS)


def test_akd2_clamps_its_uniform_start_into_the_box_as_advertorch(student, edge_batch, check_in_ball):
    # The official attack is advertorch's LinfPGDAttack with rand_init: delta ~ U(-eps, eps), then
    # delta = clamp(x + delta, 0, 1) - x, before the first step.
    start = create_method("akd2", attack_steps=0).perturb(student, edge_batch)
    check_in_ball(start, edge_batch.x, EPS)
    raw = random_start(edge_batch.x, EPS, "uniform", torch.Generator().manual_seed(0), clamp=False)
    torch.testing.assert_close(start, raw.clamp(0, 1), rtol=0, atol=0)
    assert not torch.equal(start, raw)  # the saturated pixels were clamped back


@pytest.mark.parametrize("start", ["uniform", "normal"])
def test_random_start_draws_the_same_noise_clamped_or_not(edge_batch, start):
    raw = random_start(edge_batch.x, EPS, start, torch.Generator().manual_seed(3), clamp=False)
    clamped = random_start(edge_batch.x, EPS, start, torch.Generator().manual_seed(3))
    torch.testing.assert_close(clamped, raw.clamp(0, 1), rtol=0, atol=0)
    assert not torch.equal(raw, clamped)
