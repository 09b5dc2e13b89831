import torch

from rdist.methods.base import Recipe
from rdist.methods.sat import SAT
from rdist.methods.igdm import IGDM

EPS = 8 / 255


def test_loss_is_cross_entropy_on_adversarial_inputs(student, make_batch, reference, close, float64_logits):
    batch = make_batch()
    xa = (batch.x + 0.02).clamp(0, 1)
    logits = float64_logits(student)(xa)
    close(SAT().loss(student, batch, xa), reference.ce(logits, batch.y), reference.float32_error(1.0, logits))


def test_attack_increases_cross_entropy_inside_the_ball(student, make_batch, reference, check_in_ball):
    batch = make_batch()
    xa = SAT().perturb(student, batch)
    check_in_ball(xa, batch.x, EPS)
    with torch.no_grad():
        assert reference.ce(student(xa), batch.y) > reference.ce(student(batch.x), batch.y) + 0.05
    assert all(p.grad is None for p in student.parameters())  # the attack leaves parameter gradients alone


def test_attack_starts_uniformly_in_the_ball_and_follows_the_generator(student, make_batch, check_in_ball):
    start = SAT(attack_steps=0).perturb(student, make_batch(seed=5))
    check_in_ball(start, make_batch().x, EPS)
    assert (start - make_batch().x).abs().amax() > EPS / 2  # U(-eps, eps), not x + 0.001 N(0, 1)
    assert torch.equal(SAT().perturb(student, make_batch(seed=5)), SAT().perturb(student, make_batch(seed=5)))
    assert not torch.equal(SAT().perturb(student, make_batch(seed=5)), SAT().perturb(student, make_batch(seed=6)))


def test_flags_defaults_and_recipe():
    assert SAT.name == "sat" and SAT.kind == "teacher" and SAT.bn_mode == "eval"
    assert SAT.teachers == () and not IGDM.accepts(SAT)
    assert SAT.defaults() == {}
    assert SAT.recipe == Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
