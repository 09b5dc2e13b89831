import pytest
import torch
import torch.nn.functional as F

from rdist.methods.iad_i import IADI, trust_weight, warming_up


def perturbed(x: torch.Tensor, size: float = 0.25) -> torch.Tensor:
    """A fixed stand-in for xa: a signed step in a seeded direction, large enough that S(x) and S(xa) differ
    well beyond rounding (the loss is defined for any xa)."""
    direction = torch.randn(x.shape, generator=torch.Generator().manual_seed(7)).sign()
    return (x + size * direction).clamp(0, 1)


def reference_weights(reference, teacher_adv_logits, y, beta):
    """w_i = p(T(xa_i))[y_i] ** beta, one example at a time."""
    p = reference.softmax(teacher_adv_logits)
    return torch.stack([p[i, int(y[i])] ** beta for i in range(len(y))])


def reference_loss(reference, student, teacher, batch, xa, *, beta=0.1, kl_scale=1.0, warm, detach_clean=False):
    student_adv = student(xa)
    loss = reference.kl_batchmean(teacher(batch.x), student_adv)
    if not warm:
        w = reference_weights(reference, teacher(xa), batch.y, beta)
        clean = student(batch.x)
        clean = clean.detach() if detach_clean else clean
        loss = loss + ((1 - w) * reference.kl(clean, student_adv)).mean()
    return kl_scale * loss


def float32_error(reference, student, teacher, batch, xa, *, kl_scale=1.0):
    """Both KL terms' float32 error (the introspection weight 1 - w is at most 1)."""
    with torch.no_grad():
        student_adv = student(xa)
        return (reference.float32_error(kl_scale, teacher(batch.x), student_adv)
                + reference.float32_error(kl_scale, student(batch.x), student_adv))


@pytest.mark.parametrize("epoch", [1, 60])
def test_warm_up_loss_is_ard_at_unit_temperature(bn_student, teacher, make_batch, reference, close, float64_logits,
                                                 epoch):
    batch = make_batch(epoch=epoch, epochs=200)
    xa = perturbed(batch.x)
    models = float64_logits(bn_student), float64_logits(teacher)
    expected = reference_loss(reference, *models, batch, xa, warm=True)
    close(IADI().loss(bn_student, batch, xa), expected, float32_error(reference, *models, batch, xa))


@pytest.mark.parametrize(("epoch", "beta", "kl_scale"), [(61, 0.1, 1.0), (200, 0.5, 0.3)])
def test_after_warm_up_distrusts_the_teacher_where_it_is_wrong(bn_student, teacher, make_batch, reference, close,
                                                               float64_logits, epoch, beta, kl_scale):
    batch = make_batch(epoch=epoch, epochs=200)
    xa = perturbed(batch.x)
    student64, teacher64 = float64_logits(bn_student), float64_logits(teacher)
    expected = reference_loss(reference, student64, teacher64, batch, xa, beta=beta, kl_scale=kl_scale, warm=False)
    close(IADI(beta=beta, kl_scale=kl_scale).loss(bn_student, batch, xa), expected,
          float32_error(reference, student64, teacher64, batch, xa, kl_scale=kl_scale))
    warm = reference_loss(reference, student64, teacher64, batch, xa, beta=beta, kl_scale=kl_scale, warm=True)
    assert (expected - warm).abs() > 1e-2  # the introspection term is of substance here


@pytest.mark.parametrize(("epoch", "forwards"), [(1, 3), (61, 4)])
def test_clean_forward_runs_on_every_step(bn_student, make_batch, epoch, forwards):
    # In train mode S(x) feeds clean statistics into the BN running averages, warm-up or not, as the
    # official code does: S(xa) twice, then S(x) once (warm-up) or twice (test_bn_inputs.py has the order).
    batch = make_batch(epoch=epoch, epochs=200)
    IADI().loss(bn_student.train(), batch, perturbed(batch.x))
    assert bn_student[2].num_batches_tracked.item() == forwards


def test_warm_up_boundary_follows_the_official_zero_based_count(make_batch):
    # official: introspect when the 0-based epoch >= begin; rdist's epochs are 1-based
    assert warming_up(make_batch(epoch=60), 60) and not warming_up(make_batch(epoch=61), 60)


def test_clean_student_target_is_not_detached(bn_student, teacher, make_batch, reference, close_gradients,
                                              float64_logits):
    batch = make_batch(epoch=100, epochs=200)
    xa = perturbed(batch.x)
    IADI().loss(bn_student, batch, xa).backward()
    attached, detached = float64_logits(bn_student), float64_logits(bn_student)
    teacher64 = float64_logits(teacher)
    reference_loss(reference, attached, teacher64, batch, xa, warm=False).backward()
    reference_loss(reference, detached, teacher64, batch, xa, warm=False, detach_clean=True).backward()
    close_gradients(bn_student, attached)
    assert max((live.grad - cut.grad).abs().max() for live, cut in
               zip(attached.parameters(), detached.parameters())) > 1e-4  # the two readings are distinguishable


def test_trust_weight_matches_the_formula_per_example(teacher, make_batch, reference, close):
    batch = make_batch()
    logits = teacher(perturbed(batch.x)).requires_grad_(True)
    for beta in (0.1, 1.0):
        w = trust_weight(logits, batch.y, beta)
        assert w.shape == batch.y.shape and not w.requires_grad
        # w = exp(beta log p_y): float32 rounds log p_y, of size |logits|
        close(w, reference_weights(reference, logits.detach(), batch.y, beta),
              reference.float32_error(beta, logits.detach()))
    assert 0 < w.min() and w.max() <= 1


def test_trust_weight_is_one_where_the_teacher_is_sure_and_right():
    y = torch.tensor([0, 2])
    logits = 100 * F.one_hot(y, 3).float()
    torch.testing.assert_close(trust_weight(logits, y, 0.1), torch.ones(2))
    assert trust_weight(logits, torch.tensor([1, 0]), 0.1).max() < 1e-3
