import pytest

from rdist.methods.kd import KD


@pytest.mark.parametrize("hparams", [{}, {"alpha": 0.3, "tau": 2.0}])
def test_loss_is_hinton_kd_on_clean_inputs(student, teacher, make_batch, reference, close, float64_logits, hparams):
    method = KD(**hparams)
    alpha, tau = method.alpha, method.tau
    batch = make_batch()
    s, t = float64_logits(student)(batch.x), float64_logits(teacher)(batch.x)
    expected = alpha * tau ** 2 * reference.kl_batchmean(t, s, tau) + (1 - alpha) * reference.ce(s, batch.y)
    error = reference.float32_error(alpha * tau ** 2, t, s, tau=tau) + reference.float32_error(1 - alpha, s)
    close(method.loss(student, batch, None), expected, error)


def test_trains_without_an_attack(student, make_batch):
    assert KD().perturb(student, make_batch()) is None
