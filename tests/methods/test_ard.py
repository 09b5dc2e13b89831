import pytest
import torch

from rdist.methods.ard import ARD
from rdist.methods.base import Recipe
from rdist.methods.igdm import IGDM

EPS = 8 / 255


def reference_loss(reference, student, teacher, batch, xa, alpha, tau, kl_scale):
    """The spec's loss and the error float32 may honestly leave in it (tau^2 multiplies the KL's rounding too)."""
    teacher_clean, adversarial, clean = teacher(batch.x), student(xa), student(batch.x)
    weight = alpha * tau ** 2 * kl_scale
    loss = weight * reference.kl_batchmean(teacher_clean, adversarial, tau) + (1 - alpha) * reference.ce(clean, batch.y)
    error = (reference.float32_error(weight, teacher_clean, adversarial, tau=tau)
             + reference.float32_error(1 - alpha, clean))
    return loss, error


def test_paper_preset_scales_the_kl_by_one_over_the_class_count(student, teacher, make_batch, reference, close,
                                                                float64_logits):
    batch = make_batch()
    xa = (batch.x + 0.03).clamp(0, 1)
    num_classes = student(batch.x).shape[1]
    expected, error = reference_loss(reference, float64_logits(student), float64_logits(teacher), batch, xa,
                                     alpha=1.0, tau=30.0, kl_scale=1 / num_classes)
    close(ARD().loss(student, batch, xa), expected, error)
    close(ARD(kl_scale=1.0).loss(student, batch, xa), expected * num_classes, error * num_classes)


def test_loss_with_a_clean_cross_entropy_share(student, teacher, make_batch, reference, close, float64_logits):
    batch = make_batch()
    xa = (batch.x + 0.03).clamp(0, 1)
    hparams = {"alpha": 0.4, "tau": 3.0, "kl_scale": 0.5}
    expected, error = reference_loss(reference, float64_logits(student), float64_logits(teacher), batch, xa,
                                     **hparams)
    close(ARD(**hparams).loss(student, batch, xa), expected, error)


def test_clean_forward_runs_even_at_alpha_one(bn_student, make_batch):
    # Its CE has weight 0, but in train mode it feeds BN running statistics, as the official code does.
    batch = make_batch()
    bn = bn_student[2]
    ARD().loss(bn_student.train(), batch, batch.x)
    assert bn.num_batches_tracked.item() == 2


def test_attack_increases_cross_entropy_with_bn_in_train_mode(bn_student, make_batch, reference, check_in_ball):
    batch = make_batch()
    bn_student.train(ARD.bn_mode == "train")
    xa = ARD().perturb(bn_student, batch)
    check_in_ball(xa, batch.x, EPS)
    with torch.no_grad():
        assert reference.ce(bn_student(xa), batch.y) > reference.ce(bn_student(batch.x), batch.y) + 0.05


def test_attack_starts_uniformly_in_the_ball(student, make_batch):
    batch = make_batch()
    start = ARD(attack_steps=0).perturb(student, batch)
    # U(-eps, eps) around x, not clamped to [0, 1] (test_training_attack_start.py)
    assert EPS / 2 < (start - batch.x).abs().amax() <= EPS + 1e-6


@pytest.mark.parametrize("value", [None, 0.1])
def test_kl_scale_none_keeps_the_paper_default(value):
    assert ARD(kl_scale=value).kl_scale == value  # None: 1/C, resolved from the logits


def test_flags_defaults_and_recipe():
    assert ARD.name == "ard" and ARD.kind == "distill" and ARD.bn_mode == "train"
    assert ARD.teachers == ("robust",) and IGDM.accepts(ARD)
    assert ARD.defaults() == {"alpha": 1.0, "tau": 30.0, "kl_scale": None}
    assert ARD.recipe == Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)
