"""L2 training attacks: a method declares the norms its official code attacks in. SAT (Madry et al.'s method, any
norm) and TRADES (its official `distance='l_2'`) take --norm L2; every other method refuses it in one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rdist.attacks.base import distances
from rdist.errors import RdistError
from rdist.methods.losses import kl_per_sample
from rdist.methods.registry import METHODS, create_method

EPS, STEP = 0.5, 0.1


def test_sat_and_trades_attack_in_the_l2_ball(student, make_batch):
    step = make_batch()
    for name in ("sat", "trades"):
        method = create_method(name, eps=EPS, step_size=STEP, attack_steps=5, norm="L2")
        xa = method.perturb(student, step)
        assert distances(xa, step.x, "L2").max() <= EPS + 1e-6 and xa.min() >= 0 and xa.max() <= 1, name
        assert distances(xa, step.x, "L2").max() > STEP  # it moved
        assert method.config()["norm"] == "L2"
    assert "norm" not in create_method("trades").config()  # an L-inf run's identity is as before


def test_trades_l2_step_is_the_official_l_2_branch(student, make_batch):
    """One step of trades.py's distance='l_2' branch: delta = 0.001 N(0, 1); delta += lr * grad / ||grad|| (of the KL
    at x + delta, S(x) fixed); x + delta clamped to [0, 1]; delta renormed to eps. With rdist's step size as lr."""
    step = make_batch(seed=3)
    method = create_method("trades", eps=EPS, step_size=STEP, attack_steps=1, norm="L2")
    xa = method.perturb(student, step)
    delta = 0.001 * torch.randn(step.x.shape, generator=torch.Generator().manual_seed(3))
    delta.requires_grad_(True)
    with torch.no_grad():
        clean = student(step.x)
    (grad,) = torch.autograd.grad(kl_per_sample(clean, student(step.x + delta)).sum(), delta)
    delta = delta.detach() + STEP * grad / grad.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    delta = (step.x + delta).clamp(0, 1) - step.x
    delta = delta.renorm(p=2, dim=0, maxnorm=EPS)
    torch.testing.assert_close(xa, step.x + delta, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", sorted(set(METHODS) - {"sat", "trades"}))
def test_linf_only_methods_refuse_l2_in_one_line(name):
    with pytest.raises(RdistError, match=rf"method {name} attacks in Linf only, as its official code does; train it "
                                         r"with --norm Linf \(with --norm L2: sat, trades\)"):
        create_method(name, eps=EPS, step_size=STEP, norm="L2")


def test_a_composition_attacks_as_its_base(make_batch, student):
    with pytest.raises(RdistError, match="method ard attacks in Linf only"):
        create_method("ard+igdm", norm="L2")
    assert create_method("ard+igdm").norm == "Linf"


def test_ce_pgd_in_l2_maximises_the_cross_entropy(student, make_batch):
    step = make_batch()
    xa = create_method("sat", eps=EPS, step_size=STEP, attack_steps=5, norm="L2").perturb(student, step)
    assert F.cross_entropy(student(xa), step.y) > F.cross_entropy(student(step.x), step.y)


def test_teacher_train_with_norm_l2_trains_and_records_it(tmp_path, cli):
    import rdist

    common = ["teacher", "train", "--method", "trades", "--arch", "tinycnn", "--data", "digits", "--epochs", "1",
              "--max-steps", "2", "--batch-size", "64", "--eval-n", "16", "--norm", "L2", "--quiet"]
    cli.fails([*common, "--out", tmp_path / "a"], "--norm L2 needs --eps and --step-size", unchanged=tmp_path)
    cli(*common, "--eps", "0.5", "--step-size", "0.1", "--out", tmp_path / "run")
    meta = rdist.load_model(str(tmp_path / "run" / "last.safetensors")).rdist_meta
    assert meta["provenance"]["method_config"]["norm"] == "L2" and meta["provenance"]["eps"] == 0.5
    (report,) = meta["results"].values()  # the epoch's selection evaluation, in the same ball
    assert report["norm"] == "L2" and report["eps"] == 0.5
