"""DGAD against the official code's formulas (float64, its label swaps written as loops), its attack, its
normalisation switches and its paper settings."""

import pytest
import torch

from rdist.errors import RdistError
from rdist.methods.adaad import AdaAD
from rdist.methods.base import Step
from rdist.methods.dgad import DGAD, swap_logits
from rdist.methods.registry import create_method
from rdist.parallel import GlobalBatch

EPS = 8 / 255


def swapped(logits, first, second, where):
    """main.py L415-427: in each marked row, the two logits exchanged, one row at a time."""
    logits = logits.clone()
    for i in range(len(logits)):
        if where[i]:
            a, b = logits[i, first[i]].clone(), logits[i, second[i]].clone()
            logits[i, first[i]], logits[i, second[i]] = b, a
    return logits


def official_parts(reference, student, teacher, batch, xa):
    """What main.py L397-437 computes: the partition, L_clean and L_adv (means over the two partitions, each over
    its own count), the PCR term, and the error float32 may leave in the KL and PCR sums."""
    x, xa, y = batch.x.double(), xa.double(), batch.y
    clean, adversarial, teacher_clean, teacher_adv = student(x), student(xa), teacher(x), teacher(xa)
    wrong = teacher_clean.argmax(1) != y
    teacher_clean = swapped(teacher_clean, y, teacher_clean.argmax(1), wrong)
    others = teacher_adv.clone()
    others[torch.arange(len(y)), y] = float("-inf")
    runner_up = others.argmax(1)
    margin = teacher_adv[torch.arange(len(y)), y] - teacher_adv[torch.arange(len(y)), runner_up]
    teacher_adv = swapped(teacher_adv, y, runner_up, margin < 0)
    n_st, total = int(wrong.sum()), len(y)
    clean_sum = (wrong * reference.kl(teacher_clean, clean)).sum()
    adv_sum = (~wrong * reference.kl(teacher_adv, adversarial)).sum()
    l_clean = clean_sum / (n_st + 1e-10)
    l_adv = adv_sum / (total - n_st) if total > n_st else None  # the official code divides by zero
    pcr = ((reference.softmax(adversarial) - reference.softmax(clean)) ** 2).mean()
    with torch.no_grad():
        error = (reference.float32_error(1.0, teacher_clean, clean, teacher_adv, adversarial)
                 + reference.rounding(1.0))
    return {"wrong": wrong, "n_st": n_st, "B": total, "l_clean": l_clean, "l_adv": l_adv, "pcr": pcr,
            "flips": margin < 0, "error": error}


def official_loss(parts, bs, beta=1.0):
    """main.py L444-445: (n_ST/bs) L_clean + ((bs - n_ST)/bs) L_adv + ALP_beta * PCR."""
    n = parts["n_st"]
    return n / bs * parts["l_clean"] + (bs - n) / bs * parts["l_adv"] + beta * parts["pcr"]


def official_mnv2_loss(parts, bs, beta=1.0):
    """main.py L439-441 as written: 0.5 * ((n_ST/bs) L_clean + (bs - n_ST)/bs) * L_adv + ALP_beta * PCR."""
    n = parts["n_st"]
    return 0.5 * (n / bs * parts["l_clean"] + (bs - n) / bs) * parts["l_adv"] + beta * parts["pcr"]


@pytest.fixture
def mixed_batch(make_batch, teacher):
    """The fixed batch relabelled so that the teacher is right on half of it: both partitions are populated."""
    batch = make_batch()
    with torch.no_grad():
        ranked = teacher(batch.x).argsort(1, descending=True)
    batch.y = torch.where(torch.arange(len(batch.y)) % 2 == 0, ranked[:, 0], ranked[:, 1])
    return batch


def adversarial(batch, size=0.3):
    """x moved against the teacher's margin, far enough that it flips some of the examples it gets right."""
    x = batch.x.clone().requires_grad_(True)
    logits = batch.teachers["robust"](x)
    rows = torch.arange(len(batch.y))
    runner_up = logits.detach().scatter(1, batch.y[:, None], float("-inf")).argmax(1)
    (grad,) = torch.autograd.grad((logits[rows, runner_up] - logits[rows, batch.y]).sum(), x)
    return (batch.x + size * grad.sign()).clamp(0, 1)


@pytest.mark.parametrize("pcr_beta", [1.0, 3.0])
def test_loss_on_a_full_batch_is_the_official_total(student, teacher, mixed_batch, reference, close, float64_logits,
                                                    pcr_beta):
    xa = adversarial(mixed_batch)
    parts = official_parts(reference, float64_logits(student), float64_logits(teacher), mixed_batch, xa)
    assert 0 < parts["n_st"] < parts["B"] and parts["flips"][~parts["wrong"]].any()  # MAP and both ELS swaps act
    expected = official_loss(parts, bs=parts["B"], beta=pcr_beta)  # a full batch: the official bs is its size
    close(DGAD(pcr_beta=pcr_beta).loss(student, mixed_batch, xa), expected, parts["error"] * (1 + pcr_beta))
    # The official bs of 128 on this batch of 8 (an epoch's shorter last batch) weighs its partitions otherwise.
    code = official_loss(parts, bs=128, beta=pcr_beta)
    close(DGAD(pcr_beta=pcr_beta, dgad_code_bs=128).loss(student, mixed_batch, xa), code,
          parts["error"] * (1 + pcr_beta))
    assert (code - expected).abs() > 10 * parts["error"]


def test_label_swaps_are_on_logits_and_swap_nothing_else(mixed_batch, teacher):
    logits = teacher(mixed_batch.x)
    first, second = mixed_batch.y, logits.argmax(1)
    where = torch.arange(len(first)) % 3 == 0
    torch.testing.assert_close(swap_logits(logits, first, second, where), swapped(logits, first, second, where),
                               rtol=0, atol=0)


def test_kl_scale_scales_the_kl_part_only(student, teacher, mixed_batch, reference, close, float64_logits):
    xa = adversarial(mixed_batch)
    parts = official_parts(reference, float64_logits(student), float64_logits(teacher), mixed_batch, xa)
    expected = 0.5 * (official_loss(parts, bs=parts["B"]) - parts["pcr"]) + parts["pcr"]
    close(DGAD(kl_scale=0.5).loss(student, mixed_batch, xa), expected, parts["error"])


def test_the_official_mobilenetv2_product_behind_its_switch(student, teacher, mixed_batch, reference, close,
                                                           float64_logits):
    xa = adversarial(mixed_batch)
    parts = official_parts(reference, float64_logits(student), float64_logits(teacher), mixed_batch, xa)
    code = official_mnv2_loss(parts, bs=parts["B"])
    close(DGAD(kl_scale=0.5, dgad_code_mnv2_loss=True).loss(student, mixed_batch, xa), code, parts["error"])
    close(DGAD(kl_scale=0.5, dgad_code_mnv2_loss=True, dgad_code_bs=128).loss(student, mixed_batch, xa),
          official_mnv2_loss(parts, bs=128), parts["error"])
    correct = 0.5 * (official_loss(parts, bs=parts["B"]) - parts["pcr"]) + parts["pcr"]  # the parenthesis put right
    assert (code - correct).abs() > 10 * parts["error"]


@pytest.mark.parametrize("teacher_right", [False, True])
def test_a_batch_with_one_partition_empty_is_finite(student, teacher, make_batch, reference, close, float64_logits,
                                                    teacher_right):
    batch = make_batch()
    with torch.no_grad():
        ranked = teacher(batch.x).argsort(1, descending=True)
    batch.y = ranked[:, 0] if teacher_right else ranked[:, 1]  # every example in the AT (ST) partition
    xa = adversarial(batch)
    parts = official_parts(reference, float64_logits(student), float64_logits(teacher), batch, xa)
    assert parts["n_st"] == (0 if teacher_right else parts["B"])
    # The official code divides by B - n_ST = 0 when the teacher is wrong everywhere; the KL part is then the clean
    # partition's mean alone.
    kl_part = parts["l_adv"] if teacher_right else parts["l_clean"]
    for method in (DGAD(), DGAD(dgad_code_bs=8), DGAD(dgad_code_mnv2_loss=True, kl_scale=0.5)):
        loss = method.loss(student, batch, xa)
        assert torch.isfinite(loss)
    close(DGAD().loss(student, batch, xa), kl_part + parts["pcr"], parts["error"])
    close(DGAD(dgad_code_bs=8).loss(student, batch, xa), kl_part + parts["pcr"], parts["error"])


def test_gradient_reaches_the_student_through_both_pcr_inputs(student, teacher, mixed_batch, reference, float64_logits,
                                                              close_gradients):
    teacher.requires_grad_(True)
    xa = adversarial(mixed_batch)
    DGAD(pcr_beta=3.0).loss(student, mixed_batch, xa).backward()
    student64 = float64_logits(student)
    parts = official_parts(reference, student64, float64_logits(teacher), mixed_batch, xa)
    official_loss(parts, bs=parts["B"], beta=3.0).backward()
    close_gradients(student, student64)
    assert all(p.grad is None for p in teacher.parameters())


def test_attack_is_adaads(student, make_batch, reference, float64_logits, teacher, first_step_follows,
                          check_in_ball):
    torch.testing.assert_close(DGAD(attack_steps=3).perturb(student, make_batch(seed=9)),
                               AdaAD(attack_steps=3).perturb(student, make_batch(seed=9)), rtol=0, atol=0)
    student64, teacher64 = float64_logits(student), float64_logits(teacher)
    # AT_helper.adaad_inner_loss: sum KL(T(xa) || S(xa)), the teacher re-evaluated at xa with its gradient.
    first_step_follows(lambda xa: reference.kl(teacher64(xa), student64(xa)).sum(),
                       lambda n: DGAD(attack_steps=n), student, make_batch)
    check_in_ball(DGAD().perturb(student, make_batch()), make_batch().x, EPS)


def test_batch_counts_come_from_the_one_helper(student, mixed_batch, monkeypatch):
    """With `_global_count` over the whole batch, the losses of two halves average to the whole batch's loss (with
    the official fixed bs, the one weighting that needs counts; the default needs none)."""
    xa = adversarial(mixed_batch)

    def halves(method):  # each half knows the global batch's size; its counts are its own unless patched
        return [method.loss(student, Step(x=mixed_batch.x[rows], y=mixed_batch.y[rows], epoch=1, epochs=10,
                                          teachers=mixed_batch.teachers, batch=GlobalBatch(8, rows.start, rows.stop)),
                            xa[rows])
                for rows in (slice(0, 4), slice(4, 8))]

    default = DGAD()
    torch.testing.assert_close(sum(halves(default)) / 2, default.loss(student, mixed_batch, xa))
    method = DGAD(dgad_code_bs=128)
    whole = method.loss(student, mixed_batch, xa)
    with torch.no_grad():
        wrong = mixed_batch.teachers["robust"](mixed_batch.x).argmax(1) != mixed_batch.y
    local = halves(method)
    # The collective's answer under torchrun: the global n_ST (each half holds examples of both partitions).
    monkeypatch.setattr(method, "_global_count", lambda step, mask: wrong.sum())
    torch.testing.assert_close(sum(halves(method)) / 2, whole)
    assert (sum(local) / 2 - whole).abs() > 1e-3  # per-half counts would change the loss


def test_paper_settings_teachers_and_bad_values():
    # Its name, kind, teachers, defaults and recipe (main.py's argparse: 200 epochs, piecewise 0.1/0.01/0.001 at 100
    # and 150, weight decay 5e-4) are its row of docs/methods.md (tests/methods/test_specs.py).
    assert DGAD.paper_preset("cifar10", "resnet18") == (DGAD.recipe, {"kl_scale": 1.0})
    assert DGAD.paper_preset("cifar100", "mobilenetv2") == (DGAD.recipe, {"kl_scale": 0.5})
    assert DGAD.paper_teachers == AdaAD.paper_teachers
    assert DGAD.about.code == "https://github.com/kunsaram01/DGAD"
    with pytest.raises(RdistError, match="dgad_code_bs must be a batch size"):
        create_method("dgad", dgad_code_bs=0)
