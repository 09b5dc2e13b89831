import pytest
import torch
from torch import nn

from rdist.methods.base import Step
from rdist.methods.rslad import RSLAD

EPS = 8 / 255


class Recording(nn.Module):
    """Wraps a teacher and keeps every input it is shown."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.model(x)


def reference_loss(reference, student, teacher, batch, xa, kl_scale):
    soft_labels = teacher(batch.x)
    return kl_scale * (5 / 6 * reference.kl_batchmean(soft_labels, student(xa))
                       + 1 / 6 * reference.kl_batchmean(soft_labels, student(batch.x)))


def float32_error(reference, student, teacher, batch, xa, kl_scale):
    with torch.no_grad():
        soft_labels, adversarial, clean = teacher(batch.x), student(xa), student(batch.x)
    return (reference.float32_error(kl_scale * 5 / 6, soft_labels, adversarial)
            + reference.float32_error(kl_scale / 6, soft_labels, clean))


@pytest.mark.parametrize("kl_scale", [0.1, 1.0])
def test_loss_distils_clean_soft_labels_on_adversarial_and_clean_inputs(student, teacher, make_batch, reference,
                                                                        close, float64_logits, kl_scale):
    batch = make_batch()
    xa = (batch.x - 0.1).clamp(0, 1)
    models = float64_logits(student), float64_logits(teacher)
    expected = reference_loss(reference, *models, batch, xa, kl_scale)
    close(RSLAD(kl_scale=kl_scale).loss(student, batch, xa), expected,
          float32_error(reference, *models, batch, xa, kl_scale))


def test_gradient_reaches_the_student_only(student, teacher, make_batch, reference, close_gradients, float64_logits):
    teacher.requires_grad_(True)  # a teacher that could take gradients shows the loss gives it none
    batch = make_batch()
    xa = (batch.x - 0.1).clamp(0, 1)
    RSLAD().loss(student, batch, xa).backward()
    student64 = float64_logits(student)
    reference_loss(reference, student64, float64_logits(teacher), batch, xa, 0.1).backward()
    close_gradients(student, student64)
    assert all(p.grad is None for p in teacher.parameters())


def test_attack_increases_kl_from_the_clean_soft_labels(student, make_batch, reference, check_in_ball):
    start = RSLAD(attack_steps=0).perturb(student, make_batch(seed=5))
    xa = RSLAD().perturb(student, make_batch(seed=5))
    batch = make_batch()
    check_in_ball(xa, batch.x, EPS)
    assert 0 < (start - batch.x).abs().amax() < 0.01  # x + 0.001 N(0, 1)
    with torch.no_grad():
        soft_labels = batch.teachers["robust"](batch.x)
        assert reference.kl(soft_labels, student(xa)).sum() > reference.kl(soft_labels, student(start)).sum() + 0.05


def test_teacher_sees_the_clean_batch_once_for_attack_and_loss(student, teacher, inputs):
    x, y = inputs
    recording = Recording(teacher)
    batch = Step(x=x, y=y, epoch=1, epochs=10, teachers={"robust": recording},
                  generator=torch.Generator().manual_seed(0))
    method = RSLAD()
    xa = method.perturb(student, batch)
    method.loss(student, batch, xa)
    assert len(recording.seen) == 1 and torch.equal(recording.seen[0], x)
    method.loss(student, Step(x=x.flip(0), y=y, epoch=1, epochs=10, teachers={"robust": recording}), xa)
    assert len(recording.seen) == 2  # a new batch gets its own soft labels
