import pytest
import torch

from rdist.methods.trades import TRADES

EPS = 8 / 255


def reference_loss(reference, model, batch, xa, beta, detach_clean=False):
    clean, adversarial = model(batch.x), model(xa)
    target = clean.detach() if detach_clean else clean
    return reference.ce(clean, batch.y) + beta * reference.kl_batchmean(target, adversarial)


def float32_error(reference, model, batch, xa, beta):
    with torch.no_grad():
        clean, adversarial = model(batch.x), model(xa)
    return reference.float32_error(1.0, clean) + reference.float32_error(beta, clean, adversarial)


@pytest.mark.parametrize("beta", [6.0, 1.0])
def test_loss_is_clean_ce_plus_beta_kl(student, make_batch, reference, close, float64_logits, beta):
    batch = make_batch()
    xa = (batch.x - 0.03).clamp(0, 1)
    model = float64_logits(student)
    expected, error = reference_loss(reference, model, batch, xa, beta), float32_error(reference, model, batch, xa, beta)
    close(TRADES(beta=beta).loss(student, batch, xa), expected, error)


def test_clean_prediction_is_not_detached_in_the_kl(student, make_batch, reference, close_gradients, float64_logits):
    batch = make_batch()
    xa = (batch.x - 0.03).clamp(0, 1)
    TRADES().loss(student, batch, xa).backward()
    grads = {"attached": float64_logits(student), "detached": float64_logits(student)}
    for detach, model in zip((False, True), grads.values()):
        reference_loss(reference, model, batch, xa, 6.0, detach_clean=detach).backward()
    close_gradients(student, grads["attached"])
    for attached, detached in zip(grads["attached"].parameters(), grads["detached"].parameters()):
        assert (attached.grad - detached.grad).abs().max() > 1e-3  # the two readings are distinguishable


def test_attack_increases_kl_from_the_clean_prediction(student, make_batch, reference, check_in_ball):
    batch = make_batch()
    start = TRADES(attack_steps=0).perturb(student, batch)
    xa = TRADES().perturb(student, batch)
    check_in_ball(xa, batch.x, EPS)
    with torch.no_grad():
        clean = student(batch.x)
        assert reference.kl(clean, student(xa)).sum() > 100 * reference.kl(clean, student(start)).sum()
        assert reference.kl(clean, student(xa)).sum() > 0.05


def test_attack_starts_at_x_plus_small_gaussian_noise(student, make_batch):
    batch = make_batch()
    distance = (TRADES(attack_steps=0).perturb(student, batch) - batch.x).abs().amax()
    assert 0 < distance < 0.01  # 0.001 N(0, 1), not U(-eps, eps)
