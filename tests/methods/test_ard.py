from rdist.methods.ard import ARD


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
