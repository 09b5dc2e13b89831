import pytest

from rdist.methods.base import Recipe
from rdist.methods.kd import KD


@pytest.mark.parametrize("hparams", [{}, {"alpha": 0.3, "tau": 2.0}])
def test_loss_is_hinton_kd_on_clean_inputs(student, teacher, make_batch, reference, close, float64_copy, hparams):
    method = KD(**hparams)
    alpha, tau = method.alpha, method.tau
    batch = make_batch()
    x64 = batch.x.double()
    s, t = float64_copy(student)(x64), float64_copy(teacher)(x64)
    expected = alpha * tau ** 2 * reference.kl_bm(t, s, tau) + (1 - alpha) * reference.ce(s, batch.y)
    close(method.loss(student, batch, None), expected)


def test_trains_without_an_attack(student, make_batch):
    assert KD().perturb(student, make_batch()) is None


def test_flags_defaults_and_recipe():
    assert KD.name == "kd" and KD.kind == "distill"
    assert KD.needs_teacher and not (KD.needs_natural_teacher or KD.supports_igdm)
    assert KD.defaults == {"alpha": 0.9, "tau": 4.0}
    assert KD.recipe == Recipe(epochs=200, milestones=(100, 150), weight_decay=5e-4)
