import pytest

from rdist.methods.akd2 import AKD2


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
