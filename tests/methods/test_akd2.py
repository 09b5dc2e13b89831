import pytest
import torch

from rdist.methods.akd2 import AKD2
from rdist.methods.base import Recipe
from rdist.methods.igdm import IGDM

EPS = 8 / 255


@pytest.mark.parametrize("hparams", [{}, {"tau": 3.0, "ce_weight": 0.5, "natural_weight": 0.2, "adv_weight": 0.3}])
def test_loss_distils_both_teachers_at_the_adversarial_input(student, teacher, natural_teacher, make_batch,
                                                             reference, close, float64_logits, hparams):
    method = AKD2(**hparams)
    tau = method.tau
    batch = make_batch()
    xa = (batch.x - 0.03).clamp(0, 1)
    s, t_std, t_adv = (float64_logits(model)(xa) for model in (student, natural_teacher, teacher))
    natural_weight, adv_weight = method.natural_weight * tau ** 2, method.adv_weight * tau ** 2
    expected = (method.ce_weight * reference.ce(s, batch.y) + natural_weight * reference.kl_batchmean(t_std, s, tau)
                + adv_weight * reference.kl_batchmean(t_adv, s, tau))
    error = (reference.float32_error(method.ce_weight, s) + reference.float32_error(natural_weight, t_std, s, tau=tau)
             + reference.float32_error(adv_weight, t_adv, s, tau=tau))
    close(method.loss(student, batch, xa), expected, error)


def test_attack_increases_cross_entropy_with_bn_in_train_mode(bn_student, make_batch, reference, check_in_ball):
    batch = make_batch()
    bn_student.train(AKD2.bn_mode == "train")
    xa = AKD2().perturb(bn_student, batch)
    check_in_ball(xa, batch.x, EPS)
    with torch.no_grad():
        assert reference.ce(bn_student(xa), batch.y) > reference.ce(bn_student(batch.x), batch.y) + 0.05


def test_attack_starts_uniformly_in_the_ball(student, make_batch):
    batch = make_batch()
    start = AKD2(attack_steps=0).perturb(student, batch)
    # U(-eps, eps) around x, then clamped into [0, 1] as advertorch does (test_training_attack_start.py)
    assert EPS / 2 < (start - batch.x).abs().amax() <= EPS + 1e-6


def test_flags_defaults_and_recipe():
    assert AKD2.name == "akd2" and AKD2.kind == "distill" and AKD2.bn_mode == "train"
    assert AKD2.teachers == ("robust", "natural") and not IGDM.accepts(AKD2)
    assert AKD2.defaults() == {"tau": 2.0, "ce_weight": 0.3, "natural_weight": 0.1, "adv_weight": 0.6}
    assert AKD2.recipe == Recipe(epochs=200, milestones=(50, 150), weight_decay=5e-4, swa_start=56)  # official 0-based 55
