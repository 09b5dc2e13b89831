from rdist.methods.natural import Natural


def test_loss_is_cross_entropy_on_clean_inputs(student, make_batch, reference, close, float64_logits):
    batch = make_batch()
    logits = float64_logits(student)(batch.x)
    close(Natural().loss(student, batch, None), reference.ce(logits, batch.y), reference.float32_error(1.0, logits))


def test_trains_without_an_attack(student, make_batch):
    assert Natural().perturb(student, make_batch()) is None
