from rdist.methods.sat import SAT


def test_loss_is_cross_entropy_on_adversarial_inputs(student, make_batch, reference, close, float64_logits):
    batch = make_batch()
    xa = (batch.x + 0.02).clamp(0, 1)
    logits = float64_logits(student)(xa)
    close(SAT().loss(student, batch, xa), reference.ce(logits, batch.y), reference.float32_error(1.0, logits))
