"""SAAD against the spec's formulas (float64), its attack's objective, its forwards and its paper settings."""

import pytest
import torch
from torch import nn

from rdist.errors import RdistError
from rdist.methods.base import Step
from rdist.methods.registry import create_method, method_class
from rdist.methods.saad import SAAD, renyi_entropy
from rdist.teachers.catalogue import TEACHERS
from tests.methods.test_adaad import Flat
from tests.methods.test_rslad import Recording

EPS = 8 / 255


def reference_loss(reference, student, teacher, batch, xa, *, entropy_scale=5.0, order=1.0, clean_weight=0.0,
                   igdm_alpha=1.0):
    """saad.py's loss (L59-84), written from the spec, and the error float32 may honestly leave in it."""
    x, xa = batch.x.double(), xa.double()
    d = xa - x
    teacher_adv, teacher_behind, teacher_clean = teacher(xa), teacher(x - d), teacher(x)
    student_adv, student_behind, student_clean = student(xa), student(x - d), student(x)
    entropy = reference.renyi_entropy(teacher_adv, order)
    w = (entropy_scale * (entropy - entropy.min())).clamp(min=0)
    w_hat = (w - w.min()) / (w.max() - w.min() + 1e-8)
    ramp = igdm_alpha * batch.epoch / batch.epochs
    slopes = teacher_adv - teacher_behind, student_adv - student_behind
    per_example = (w * (reference.kl(teacher_adv, student_adv) + ramp * reference.kl(*slopes))
                   + clean_weight * (1 - w_hat) * reference.kl(teacher_clean, student_clean))
    with torch.no_grad():
        largest = w.max().item()
        kl_size = (reference.kl(teacher_adv, student_adv) + ramp * reference.kl(*slopes)).max().item()
        error = (reference.float32_error(largest, teacher_adv, student_adv)
                 + reference.float32_error(largest * ramp, *slopes, teacher_adv, teacher_behind, student_adv,
                                           student_behind)
                 + reference.float32_error(clean_weight, teacher_clean, student_clean)
                 # the weights' own rounding (an entropy of log-probabilities), times what they weigh
                 + entropy_scale * kl_size * reference.float32_error(1.0, teacher_adv))
    return per_example.mean(), error, w


@pytest.mark.parametrize("hparams", [{}, {"clean_weight": 1.0}, {"renyi_order": 2.0, "igdm_alpha": 10.0},
                                     {"entropy_scale": 2.0, "clean_weight": 0.5}])


def test_loss_is_the_entropy_weighted_kl_and_igdm_term(student, teacher, make_batch, reference, close, float64_logits,
                                                       hparams):
    batch = make_batch(epoch=30, epochs=100)
    xa = (batch.x + 0.1 * torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(3)).sign()).clamp(0, 1)
    method = SAAD(**hparams)
    expected, error, w = reference_loss(
        reference, float64_logits(student), float64_logits(teacher), batch, xa, entropy_scale=method.entropy_scale,
        order=method.renyi_order, clean_weight=method.clean_weight, igdm_alpha=method.igdm_alpha)
    close(method.loss(student, batch, xa), expected, error)
    assert w.min() == 0 and w.max() > 1  # the most confident example weighs 0; the weights are of substance


class Bf16Logits(nn.Module):
    """`model` under CPU bf16 autocast, its bf16 logits handed over in float64: the logits SAAD sees there."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return self.model(x.float()).double()


def test_entropy_and_slopes_are_taken_in_fp32_under_bf16_autocast(student, teacher, make_batch, reference, close):
    """The IGDM part of the loss (igdm_alpha 10 minus 0) from bf16 logits: their differences and the entropy weights
    taken in fp32 match float64; differences rounded to bf16 would be told apart."""
    batch = make_batch(epoch=100, epochs=100)
    direction = torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(5)).sign()
    xa = (batch.x + 0.25 * direction).clamp(0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        assert student(batch.x).dtype == torch.bfloat16  # the forwards do run in bf16 here
        base = SAAD(igdm_alpha=0.0).loss(student, batch, xa)
        term = SAAD(igdm_alpha=10.0).loss(student, batch, xa) - base
    student16, teacher16 = Bf16Logits(student), Bf16Logits(teacher)
    ahead, behind = xa.double(), 2 * batch.x.double() - xa.double()
    entropy = reference.renyi_entropy(teacher16(ahead), 1.0)
    weight = 5.0 * (entropy - entropy.min())

    def igdm_part(rounded: bool) -> torch.Tensor:
        slopes = [(m(ahead).bfloat16() - m(behind).bfloat16()).double() if rounded else m(ahead) - m(behind)
                  for m in (teacher16, student16)]
        return (weight * 10.0 * reference.kl(*slopes)).mean()

    logits = [m(p) for m in (teacher16, student16) for p in (ahead, behind)]
    error = (reference.float32_error(10.0 * weight.max().item(), logits[0] - logits[1], logits[2] - logits[3],
                                     *logits) + reference.rounding(2 * base.abs().item()))
    close(term, igdm_part(rounded=False), error)
    assert (igdm_part(rounded=False) - igdm_part(rounded=True)).abs() > 2 * error


def test_clean_term_counts_when_weighted(student, make_batch):
    batch = make_batch(epoch=30, epochs=100)
    xa = (batch.x - 0.1).clamp(0, 1)
    assert (SAAD(clean_weight=1.0).loss(student, batch, xa) - SAAD().loss(student, batch, xa)).abs() > 0.01


def test_gradient_reaches_the_student_only(student, teacher, make_batch, reference, float64_logits, close_gradients):
    teacher.requires_grad_(True)
    batch = make_batch(epoch=30, epochs=100)
    xa = (batch.x - 0.1).clamp(0, 1)
    SAAD(clean_weight=0.5).loss(student, batch, xa).backward()
    student64 = float64_logits(student)
    reference_loss(reference, student64, float64_logits(teacher), batch, xa, clean_weight=0.5)[0].backward()
    close_gradients(student, student64)
    assert all(p.grad is None for p in teacher.parameters())


def attack_objective(reference, student, teacher, batch, lambda_inner):
    """sum_i KL(p(T~_i) || p(S(xa_i))), T~ = T(x) with T_y moved by lambda <g_i, xa_i - x_i> (attacks.py L152-189)."""
    x = batch.x.double().requires_grad_(True)
    logits = teacher(x)
    rows = torch.arange(len(batch.y))
    (g,) = torch.autograd.grad(logits[rows, batch.y].sum(), x)
    logits, x = logits.detach(), x.detach()

    def objective(xa):
        target = logits.clone()
        target[rows, batch.y] = target[rows, batch.y] + lambda_inner * ((xa - x) * g).sum(dim=(1, 2, 3))
        return reference.kl(target, student(xa)).sum()

    return objective


@pytest.mark.parametrize("lambda_inner", [1.0, 3.0])
def test_attack_steps_on_the_kl_to_the_linearised_teacher(student, teacher, make_batch, reference, float64_logits,
                                                          first_step_follows, check_in_ball, lambda_inner):
    objective = attack_objective(reference, float64_logits(student), float64_logits(teacher), make_batch(),
                                 lambda_inner)
    first_step_follows(objective, lambda n: SAAD(attack_steps=n, lambda_inner=lambda_inner), student, make_batch)
    start = SAAD(attack_steps=0).perturb(student, make_batch(seed=5))
    xa = SAAD().perturb(student, make_batch(seed=5))
    check_in_ball(xa, make_batch().x, EPS)
    assert 0 < (start - make_batch().x).abs().amax() < 0.01  # x + 0.001 N(0, 1), not clamped
    with torch.no_grad():
        assert objective(xa.double()) > objective(start.double()) + 0.05


def test_attack_gradient_flows_through_the_linearised_teacher_logit(make_batch):
    batch = make_batch()
    flat = Flat(num_classes=batch.teachers["robust"](batch.x).shape[1])
    start = SAAD(attack_steps=0).perturb(flat, make_batch())
    # The student's logits do not move with xa: only the teacher's linearised true-class logit steers the attack.
    assert (SAAD().perturb(flat, make_batch()) - start).abs().amax() > 0.5 * EPS
    assert torch.equal(SAAD(lambda_inner=0.0).perturb(flat, make_batch()), start)


def test_teacher_runs_once_at_x_for_attack_and_loss(student, teacher, inputs):
    x, y = inputs
    recording = Recording(teacher)
    step = Step(x=x, y=y, epoch=1, epochs=10, teachers={"robust": recording}, generator=torch.Generator().manual_seed(0))
    method = SAAD(clean_weight=1.0)  # the clean term reuses the attack's T(x)
    xa = method.perturb(student, step)
    method.loss(student, step, xa)
    assert len(recording.seen) == 3
    for seen, expected in zip(recording.seen, (x, xa, x - (xa - x))):
        assert torch.equal(seen, expected)


def test_batch_statistics_come_from_the_one_helper(student, teacher, make_batch, monkeypatch):
    """With `_batch_min_max` over the whole batch, the losses of two halves average to the whole batch's loss: what
    data-parallel training needs, so that switching the helper to a collective is all it takes."""
    batch = make_batch(epoch=30, epochs=100)
    xa = (batch.x + 0.1).clamp(0, 1)
    method = SAAD(clean_weight=0.5)
    whole = method.loss(student, batch, xa)
    with torch.no_grad():
        entropy = renyi_entropy(teacher(xa), 1.0)
    monkeypatch.setattr(method, "_batch_min_max", lambda step, values: (entropy.min(), entropy.max()))
    halves = [method.loss(student, Step(x=batch.x[rows], y=batch.y[rows], epoch=30, epochs=100,
                                        teachers=batch.teachers), xa[rows]) for rows in (slice(0, 4), slice(4, 8))]
    torch.testing.assert_close((halves[0] + halves[1]) / 2, whole)
    monkeypatch.undo()
    local = [method.loss(student, Step(x=batch.x[rows], y=batch.y[rows], epoch=30, epochs=100,
                                       teachers=batch.teachers), xa[rows]) for rows in (slice(0, 4), slice(4, 8))]
    assert ((local[0] + local[1]) / 2 - whole).abs() > 1e-3  # per-half statistics would change the loss


def test_paper_settings_teachers_and_bad_values():
    # Its name, kind, teachers, defaults and recipe (saad.py: 200 epochs, x0.1 after 100 and 150, weight decay 2e-4
    # hard-coded at L39, SWA from epoch 95) are its row of docs/methods.md (tests/methods/test_specs.py); the IGDM
    # term is its own, per example, so igdm does not compose with it.
    assert SAAD.paper_preset("cifar10", "resnet18") == (SAAD.recipe, {"igdm_alpha": 1.0})
    assert method_class("saad").paper_preset("cifar100", "mobilenetv2") == (SAAD.recipe, {"igdm_alpha": 10.0})
    teacher = SAAD.paper_teachers["robust"]["cifar10"]
    assert teacher == "Gowal2021Improving_28_10_ddpm_100m" and (teacher, "cifar10") in TEACHERS
    assert ("Bartoldson2024Adversarial_WRN-94-16", "cifar10") in TEACHERS  # the other teacher of its main.sh
    assert SAAD.about.code == "https://github.com/HongsinLee/saad"
    with pytest.raises(RdistError, match="entropy_scale must be 0 or more"):
        create_method("saad", entropy_scale=-1.0)
