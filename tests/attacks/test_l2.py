"""L2 on the one PGD core and around it: normalised-gradient steps, the L2 ball and the box, the uniform start in
the ball, the L2 eps-ball check, AutoAttack's L2 version, and what stays L-inf only."""

from __future__ import annotations

import pytest
import torch

from rdist.attacks import create_attack, evaluate, pgd
from rdist.attacks.base import check_adversarial, distances
from rdist.attacks.pgd import project, random_start
from rdist.errors import AdversarialBoundsError, RdistError
from rdist.report.config import EvalConfig

EPS = 1.0  # digits: 64 pixels, so an L2 budget of 1 is about 32/255 on each of them


@pytest.fixture(scope="module")
def batch(digits):
    return digits.x_test[:40].float() / 255, digits.y_test[:40]


def test_projection_lands_in_the_box_and_the_ball():
    x = torch.rand(64, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    far = x + 3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    projected = project(far, x, 0.5, "L2")
    assert distances(projected, x, "L2").max() <= 0.5 + 1e-6 and projected.min() >= 0 and projected.max() <= 1
    near = x + 1e-3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    inside = near.clamp(0, 1)
    torch.testing.assert_close(project(near, x, 0.5, "L2"), inside)  # inside the ball: only the box clamps


def test_the_uniform_start_fills_the_l2_ball():
    x = torch.full((2000, 1, 4, 4), 0.5)
    start = random_start(x, 0.2, "uniform", torch.Generator().manual_seed(0), norm="L2")
    radii = distances(start, x, "L2")
    assert radii.max() <= 0.2 + 1e-6 and radii.min() < 0.02 and 0.08 < radii.mean() < 0.12  # radius ~ U(0, eps)


def test_l2_pgd_climbs_the_loss_with_normalised_steps(digits_model, batch):
    x, y = batch
    losses = []
    xa = pgd(lambda xa: torch.nn.functional.cross_entropy(digits_model(xa), y, reduction="none"), x, eps=EPS,
             step_size=EPS / 4, steps=10, start="zero", norm="L2",
             observe=lambda step, loss, grad: losses.append(loss.sum().item()) or grad)
    assert distances(xa, x, "L2").max() <= EPS + 1e-6 and losses[-1] > 2 * losses[0]


def test_the_l2_ball_check_catches_an_attack_that_left_it():
    x = torch.full((2, 1, 4, 4), 0.5)
    step = torch.zeros_like(x)
    step[:, 0, 0, 0] = 0.3
    step[:, 0, 1, 1] = 0.4  # L2 length 0.5, L-inf length 0.4
    check_adversarial(x + step, x, 0.5, "pgd20", "L2")
    with pytest.raises(AdversarialBoundsError, match=r"L2 distance 0\.(49999|50000)\d* > eps 0\.45"):
        check_adversarial(x + step, x, 0.45, "pgd20", "L2")
    check_adversarial(x + step, x, 0.45, "pgd20", "Linf")


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["fgsm", "pgd20", "cw", "aa:apgd-ce", "square"])
def test_every_attack_has_its_l2_version(digits_model, batch, name):
    x, y = batch[0][:16], batch[1][:16]
    attack = create_attack(name, digits_model, EPS, norm="L2")
    x_adv = attack(x, y)  # checked in the L2 ball by the attack itself
    assert distances(x_adv, x, "L2").max() <= EPS + 1e-6
    if name.startswith(("aa", "square")):
        assert attack.adversary.norm == "L2"


@pytest.mark.e2e
def test_l2_accuracy_falls_with_eps_and_is_reported_as_l2(digits_model, batch):
    x, y = batch
    accuracy = [evaluate(digits_model, x, y, ["clean", "pgd20"], eps=eps, norm="L2", checks=False)
                for eps in (0.25, 1.0, 2.0)]
    pgd20 = [r.accuracy["pgd20"] for r in accuracy]
    assert pgd20 == sorted(pgd20, reverse=True) and pgd20[0] > pgd20[-1] and accuracy[0].norm == "L2"


def test_what_exists_in_l_inf_only_is_refused_in_l2(digits_artifact, cli):
    with pytest.raises(RdistError, match=r"pgd20-trades is the TRADES papers' L-inf protocol .*: with --norm L2"):
        create_attack("pgd20-trades", None, EPS, norm="L2")
    cli.fails(["attack", digits_artifact, "--norm", "L2", "--attacks", "clean,pgd20-trades", "--quiet"],
              "pgd20-trades is the TRADES")
    cli.fails(["attack", digits_artifact, "--norm", "L1", "--quiet"], "--norm must be Linf or L2, got 'L1'")


def test_the_config_takes_the_norms_budgets():
    assert EvalConfig(norm="L2").eps == 0.5 and EvalConfig().eps == 8 / 255
    assert EvalConfig(norm="L2", eps="2").eps == 2.0  # an L2 length may exceed a pixel's range
    with pytest.raises(RdistError, match="did you mean 2/255"):
        EvalConfig(eps="2")
