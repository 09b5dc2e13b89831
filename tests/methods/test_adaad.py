import pytest
import torch
from torch import nn

from rdist.methods.adaad import AdaAD

EPS = 8 / 255


class Flat(nn.Module):
    """A student whose logits do not move with its input (zero input gradient): any change the attack makes
    to xa must then come through the teacher."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.logits = nn.Parameter(torch.randn(num_classes, generator=torch.Generator().manual_seed(4)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits + 0 * x.flatten(1).sum(1, keepdim=True)


def reference_loss(reference, student, teacher, batch, xa, alpha, kl_scale):
    """The spec's loss and the error float32 may honestly leave in it."""
    logits = {"adversarial": (teacher(xa), student(xa)), "clean": (teacher(batch.x), student(batch.x))}
    weights = {"adversarial": kl_scale * alpha, "clean": kl_scale * (1 - alpha)}
    loss = sum(weights[k] * reference.kl_batchmean(*logits[k]) for k in logits)
    return loss, sum(reference.float32_error(weights[k], *logits[k]) for k in logits)


@pytest.mark.parametrize(("alpha", "kl_scale"), [(1.0, 0.1), (1.0, 1.0), (0.7, 0.1)])
def test_loss_matches_the_spec(student, teacher, make_batch, reference, close, float64_logits, alpha, kl_scale):
    batch = make_batch()
    xa = (batch.x + 0.1).clamp(0, 1)
    expected, error = reference_loss(reference, float64_logits(student), float64_logits(teacher), batch, xa, alpha,
                                     kl_scale)
    close(AdaAD(alpha=alpha, kl_scale=kl_scale).loss(student, batch, xa), expected, error)


def test_loss_gives_the_teacher_no_gradient(student, teacher, make_batch):
    teacher.requires_grad_(True)
    batch = make_batch()
    AdaAD(alpha=0.5).loss(student, batch, (batch.x + 0.1).clamp(0, 1)).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_attack_increases_the_teacher_student_disagreement_at_xa(student, make_batch, reference, check_in_ball):
    start = AdaAD(attack_steps=0).perturb(student, make_batch(seed=5))
    xa = AdaAD().perturb(student, make_batch(seed=5))
    batch = make_batch()
    check_in_ball(xa, batch.x, EPS)
    assert 0 < (start - batch.x).abs().amax() < 0.01  # x + 0.001 N(0, 1)
    with torch.no_grad():
        at_xa = reference.kl(batch.teachers["robust"](xa), student(xa)).sum()
        assert at_xa > reference.kl(batch.teachers["robust"](start), student(start)).sum() + 0.05


def test_attack_gradient_flows_through_the_teacher(make_batch, check_in_ball):
    batch = make_batch()
    flat = Flat(num_classes=batch.teachers["robust"](batch.x).shape[1])
    start = AdaAD(attack_steps=0).perturb(flat, make_batch())
    xa = AdaAD().perturb(flat, make_batch())
    check_in_ball(xa, batch.x, EPS)
    # with the teacher held fixed the gradient would be zero and xa would stay at its start
    assert (xa - start).abs().amax() > 0.5 * EPS


@pytest.mark.parametrize(("dataset", "kl_scale"), [("cifar10", 0.1), ("cifar100", 1.0)])
def test_paper_preset_scales_the_kl_as_the_official_code_of_each_dataset(dataset, kl_scale):
    # CIFAR-10: nn.KLDivLoss() element mean (KLbm / 10); CIFAR-100: (1/B) * sum (KLbm)
    assert AdaAD.paper_preset(dataset, "resnet18") == (AdaAD.recipe, {"kl_scale": kl_scale})
