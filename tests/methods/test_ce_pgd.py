"""The methods whose inner attack is `Method.ce_pgd`, Madry's PGD on the student's cross-entropy: each raises the
cross-entropy inside the eps-ball, with BN in the mode the method declares, and starts where its official code does.

The start is each method's own (docs/methods.md, "Random start of the inner attack"): uniform in the ball (clamped
into [0, 1] by SAT's, AKD2's and the IGDM code's ARD, left raw by the others) or x + 0.001 N(0, 1) (MART, B-MTARD, MTARD);
test_training_attack_start.py checks the clamping at the box's edges.
"""

from __future__ import annotations

import pytest
import torch

from rdist.methods.base import Method
from rdist.methods.registry import METHODS, create_method

EPS = 8 / 255
# label: (method, its options, where its attack starts)
CE_PGD = {
    "sat": ("sat", {}, "uniform, clamped"),
    "mart": ("mart", {}, "normal"),
    "ard": ("ard", {}, "uniform"),
    "akd2": ("akd2", {}, "uniform, clamped"),
    "iad-i": ("iad-i", {}, "uniform"),
    "iad-ii": ("iad-ii", {}, "uniform"),
    "bmtard": ("bmtard", {}, "normal"),  # mtard_inner_loss_ce, MTARD's and B-MTARD's
    "mtard": ("mtard", {}, "normal"),
    "ard+igdm, the IGDM code's ARD": ("ard+igdm", {"igdm_code_ard": True}, "uniform, clamped"),
}


def method(label: str, **settings) -> Method:
    name, options, _ = CE_PGD[label]
    return create_method(name, **options, **settings)


def test_every_method_that_attacks_with_ce_pgd_is_listed(student, make_batch, monkeypatch):
    users, ce_pgd = [], Method.ce_pgd

    def recording(self, *args, **kwargs):
        users.append(self.name)
        return ce_pgd(self, *args, **kwargs)

    monkeypatch.setattr(Method, "ce_pgd", recording)
    for name in METHODS:
        create_method(name, attack_steps=1).perturb(student, make_batch())
    assert users == [label for label in CE_PGD if label in METHODS]


@pytest.mark.parametrize("seed", [0, 3])
@pytest.mark.parametrize("model", ["student", "bn_student"])
@pytest.mark.parametrize("label", CE_PGD)
def test_the_attack_raises_cross_entropy_inside_the_ball(label, model, seed, make_batch, reference, check_in_ball,
                                                         request):
    model = request.getfixturevalue(model)
    attack = method(label)
    model.train(attack.bn_mode == "train")  # as the engine runs it
    start = method(label, attack_steps=0).perturb(model, make_batch(seed=seed))
    xa = attack.perturb(model, make_batch(seed=seed))
    x, y = make_batch().x, make_batch().y
    check_in_ball(xa, x, EPS)
    with torch.no_grad():
        assert reference.ce(model(xa), y) > reference.ce(model(x), y) + 0.05
        assert reference.ce(model(xa), y) > reference.ce(model(start), y) + 0.1
    assert all(p.grad is None for p in model.parameters())  # the attack leaves parameter gradients alone


@pytest.mark.parametrize("label", CE_PGD)
def test_the_attack_starts_where_its_official_code_does_and_follows_the_generator(label, student, make_batch,
                                                                                  check_in_ball):
    x, start_kind = make_batch().x, CE_PGD[label][2]
    start = method(label, attack_steps=0).perturb(student, make_batch(seed=5))
    distance = (start - x).abs().amax()
    if start_kind.startswith("uniform"):
        assert EPS / 2 < distance <= EPS + 1e-6  # U(-eps, eps), not x + 0.001 N(0, 1)
    else:
        assert 0 < distance < 0.01
    if start_kind.endswith("clamped"):
        check_in_ball(start, x, EPS)
    assert torch.equal(method(label).perturb(student, make_batch(seed=5)),
                       method(label).perturb(student, make_batch(seed=5)))
    assert not torch.equal(method(label).perturb(student, make_batch(seed=5)),
                           method(label).perturb(student, make_batch(seed=6)))
