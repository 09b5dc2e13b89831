import pytest
import torch

from rdist.methods.iad_ii import IADII


def perturbed(x: torch.Tensor, size: float = 0.25) -> torch.Tensor:
    """A fixed stand-in for xa, far enough from x that every term of the loss is of substance."""
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).sign()
    return (x + size * direction).clamp(0, 1)


def reference_loss(reference, student, adv_teacher, std_teacher, batch, xa, *, beta=0.1, kl_scale=1.0, warm):
    student_adv, adv_logits = student(xa), adv_teacher(xa)
    if warm:
        adv_term = reference.kl_batchmean(adv_logits, student_adv)
    else:
        p = reference.softmax(adv_logits)
        w = torch.stack([p[i, int(batch.y[i])] ** beta for i in range(len(batch.y))])
        adv_term = (w * reference.kl(adv_logits, student_adv)
                    + (1 - w) * reference.kl(student(batch.x), student_adv)).mean()
    std_term = reference.kl_batchmean(std_teacher(xa), student_adv)
    return 0.25 * reference.ce(student_adv, batch.y) + kl_scale * (0.5 * adv_term + 0.25 * std_term)


def float32_error(reference, student, adv_teacher, std_teacher, batch, xa, *, kl_scale=1.0):
    """Every term's float32 error; the trust weights w, 1 - w are at most 1."""
    with torch.no_grad():
        student_adv = student(xa)
        return (reference.float32_error(0.25, student_adv)
                + reference.float32_error(0.5 * kl_scale, adv_teacher(xa), student(batch.x), student_adv)
                + reference.float32_error(0.25 * kl_scale, std_teacher(xa), student_adv))


@pytest.mark.parametrize(("epoch", "warm"), [(1, True), (40, True), (41, False), (200, False)])
@pytest.mark.parametrize(("beta", "kl_scale"), [(0.1, 1.0), (0.5, 2.0)])
def test_loss_matches_the_spec_before_and_after_warm_up(bn_student, teacher, natural_teacher, make_batch, reference,
                                                        close, float64_logits, epoch, warm, beta, kl_scale):
    batch = make_batch(epoch=epoch, epochs=200)
    xa = perturbed(batch.x)
    models = [float64_logits(m) for m in (bn_student, teacher, natural_teacher)]
    expected = reference_loss(reference, *models, batch, xa, beta=beta, kl_scale=kl_scale, warm=warm)
    close(IADII(beta=beta, kl_scale=kl_scale).loss(bn_student, batch, xa), expected,
          float32_error(reference, *models, batch, xa, kl_scale=kl_scale))
    other_phase = reference_loss(reference, *models, batch, xa, beta=beta, kl_scale=kl_scale, warm=not warm)
    assert (expected - other_phase).abs() > 1e-2  # the two phases are distinguishable on this batch


def test_gradient_reaches_the_student_through_its_clean_target(bn_student, teacher, natural_teacher, make_batch,
                                                               reference, close_gradients, float64_logits):
    batch = make_batch(epoch=100, epochs=200)
    xa = perturbed(batch.x)
    IADII().loss(bn_student, batch, xa).backward()
    student64 = float64_logits(bn_student)
    reference_loss(reference, student64, float64_logits(teacher), float64_logits(natural_teacher), batch, xa,
                   warm=False).backward()
    close_gradients(bn_student, student64)
