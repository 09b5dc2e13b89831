import pytest
import torch
import torch.nn.functional as F

from rdist.attacks.pgd import pgd
from rdist.errors import RdistError
from rdist.methods.adaad import AdaAD
from rdist.methods.ard import ARD
from rdist.methods.base import Recipe
from rdist.methods.iad_i import IADI
from rdist.methods.igdm import IGDM
from rdist.methods.registry import create_method, method_class
from rdist.methods.rslad import RSLAD


def base_reference(reference, name, student, teacher, batch, xa):
    """The base losses at their defaults, written from the spec, and their float32 error."""
    if name == "ard":  # alpha 1, tau 30, kl_scale 1/C
        soft_labels, adversarial = teacher(batch.x), student(xa)
        weight = 30.0 ** 2 / soft_labels.shape[1]
        return (weight * reference.kl_batchmean(soft_labels, adversarial, tau=30.0),
                reference.float32_error(weight, soft_labels, adversarial, tau=30.0))
    if name == "rslad":
        soft_labels, adversarial, clean = teacher(batch.x), student(xa), student(batch.x)
        return (0.1 * (5 / 6 * reference.kl_batchmean(soft_labels, adversarial) + 1 / 6 * reference.kl_batchmean(soft_labels, clean)),
                reference.float32_error(0.1, soft_labels, adversarial, clean))
    teacher_adv, adversarial = teacher(xa), student(xa)
    return 0.1 * reference.kl_batchmean(teacher_adv, adversarial), reference.float32_error(0.1, teacher_adv, adversarial)


def igdm_reference(reference, student, teacher, batch, xa, alpha, beta, gamma):
    """The IGDM term and its float32 error; the slopes' own rounding (one subtraction of logits each) is
    covered by ROUNDING_STEPS roundings of the logits' size."""
    x, d = batch.x.double(), (xa - batch.x).double()
    teachers, students = (teacher(x + beta * d), teacher(x - gamma * d)), (student(x + beta * d), student(x - gamma * d))
    teacher_slope, student_slope = teachers[0] - teachers[1], students[0] - students[1]
    weight = alpha * (batch.epoch / batch.epochs)
    with torch.no_grad():
        error = reference.float32_error(weight, teacher_slope, student_slope, *teachers, *students)
    return weight * reference.kl_batchmean(teacher_slope, student_slope), error


BASES = {"ard": ARD, "rslad": RSLAD, "adaad": AdaAD}


@pytest.mark.parametrize("base", sorted(BASES))
@pytest.mark.parametrize(("alpha", "beta", "gamma"), [(20.0, 1.0, 1.0), (5.0, 0.5, 2.0)])
def test_loss_adds_the_ramped_slope_matching_term(student, teacher, make_batch, reference, close, float64_logits, base,
                                                  alpha, beta, gamma):
    batch = make_batch(epoch=3, epochs=10)
    xa = (batch.x + 0.1).clamp(0, 1)
    student64, teacher64 = float64_logits(student), float64_logits(teacher)
    term, term_error = igdm_reference(reference, student64, teacher64, batch, xa, alpha, beta, gamma)
    base_loss, base_error = base_reference(reference, base, student64, teacher64, batch, xa)
    method = IGDM(BASES[base](), igdm_alpha=alpha, igdm_beta=beta, igdm_gamma=gamma)
    close(method.loss(student, batch, xa), base_loss + term, base_error + term_error)
    assert term > 1e-2  # the term is of substance on this batch


def test_ramp_is_zero_at_epoch_zero_and_full_at_the_last(student, make_batch):
    start, end = make_batch(epoch=0, epochs=10), make_batch(epoch=10, epochs=10)
    xa = (start.x + 0.1).clamp(0, 1)
    method = IGDM(RSLAD())
    assert torch.equal(method.loss(student, start, xa), RSLAD().loss(student, start, xa))  # base + 0 * term
    assert method.loss(student, end, xa) > RSLAD().loss(student, end, xa) + 0.1


def slopes_term(reference, student, teacher, batch, xa, round_to_bf16: bool):
    """The IGDM term at alpha 20, b = g = 1 on the logits the models give (bf16 under autocast), their
    differences taken in float64, or rounded to bf16 first when `round_to_bf16`."""
    d = xa - batch.x
    ahead, behind = batch.x + d, batch.x - d

    def slope(model):
        difference = model(ahead) - model(behind) if round_to_bf16 else model(ahead).double() - model(behind).double()
        return difference.double()

    with torch.no_grad():
        return 20.0 * (batch.epoch / batch.epochs) * reference.kl_batchmean(slope(teacher), slope(student))


def slopes_error(reference, student, teacher, batch, xa, base_loss):
    """float32's error in `IGDM.loss - base.loss`: the term's own, and the rounding of the base loss in both."""
    d = xa - batch.x
    with torch.no_grad():
        logits = [model(batch.x + sign * d).double() for model in (teacher, student) for sign in (1, -1)]
        slopes = logits[0] - logits[1], logits[2] - logits[3]
        return (reference.float32_error(20.0 * batch.epoch / batch.epochs, *slopes, *logits)
                + reference.rounding(2 * base_loss.abs().item()))


def test_logit_differences_are_taken_in_fp32_under_bf16_autocast(student, teacher, make_batch, reference, close):
    batch = make_batch(epoch=10, epochs=10)
    direction = torch.randn(batch.x.shape, generator=torch.Generator().manual_seed(5)).sign()
    xa = (batch.x + 0.25 * direction).clamp(0, 1)  # far enough that the logits change sign across the probe
    base, method = RSLAD(), IGDM(RSLAD())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert student(batch.x).dtype == torch.bfloat16  # the forwards do run in bf16 here
        base_loss = base.loss(student, batch, xa)
        term = method.loss(student, batch, xa) - base_loss
        exact = slopes_term(reference, student, teacher, batch, xa, round_to_bf16=False)
        rounded = slopes_term(reference, student, teacher, batch, xa, round_to_bf16=True)
        error = slopes_error(reference, student, teacher, batch, xa, base_loss)
    close(term, exact, error)
    assert (exact - rounded).abs() > 2 * error  # differences rounded to bf16 would be told apart


def test_teacher_gets_no_gradient(student, teacher, make_batch):
    teacher.requires_grad_(True)
    batch = make_batch(epoch=5, epochs=10)
    IGDM(AdaAD()).loss(student, batch, (batch.x + 0.1).clamp(0, 1)).backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters())


@pytest.mark.parametrize("base", sorted(BASES))
def test_attack_bn_mode_and_flags_are_the_base_methods(student, make_batch, base):
    inner = BASES[base](attack_steps=3)
    method = IGDM(inner)
    torch.testing.assert_close(method.perturb(student, make_batch(seed=9)), inner.perturb(student, make_batch(seed=9)))
    assert method.name == f"{base}+igdm" and method.kind == "distill"
    assert method.bn_mode == inner.bn_mode and method.teachers == ("robust",)
    assert (method.eps, method.step_size, method.attack_steps) == (inner.eps, inner.step_size, inner.attack_steps)
    assert method.recipe == Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)


def test_config_holds_base_and_igdm_hyper_parameters():
    # None: not given, the paper value (the CLI's unset options)
    config = create_method("adaad+igdm", kl_scale=1.0, igdm_alpha=10, igdm_gamma=None).config()
    assert config["method"] == "adaad+igdm" and config["kl_scale"] == 1.0 and config["alpha"] == 1.0
    assert (config["igdm_alpha"], config["igdm_beta"], config["igdm_gamma"]) == (10.0, 1.0, 1.0)


def test_paper_preset_is_the_bases_hyper_parameters_under_the_igdm_codes_recipe():
    # adaad_IGDM_cifar100.py: 200 epochs, x0.1 at 100 and 150, its argparse weight decay 2e-4 (AdaAD's own: 5e-4)
    assert method_class("adaad+igdm").paper_preset("cifar100", "resnet18") == (IGDM.term_recipe, {"kl_scale": 1.0})
    # the base's CIFAR-10 value
    assert method_class("adaad+igdm").paper_preset("cifar10", "resnet18")[1] == {"kl_scale": 0.1}
    assert method_class("adaad").paper_preset("cifar100", "resnet18") == (AdaAD.recipe, {"kl_scale": 1.0})
    assert IGDM.term_recipe != AdaAD.recipe  # so the first line does tell the two recipes apart


def test_paper_preset_of_rslad_igdm_decays_at_0_7_0_86_0_95_of_300_epochs():
    # rslad_IGDM_cifar100.py: `epoch in [int(epochs*0.7), int(epochs*0.86), int(epochs*0.95)]`, ramp over 300
    assert method_class("rslad+igdm").paper_preset("cifar100", "resnet18") == (
        Recipe(epochs=300, milestones=(210, 258, 285), weight_decay=2e-4), {})


def test_paper_preset_of_ard_igdm_is_the_igdm_codes_own_ard():
    recipe, hparams = method_class("ard+igdm").paper_preset("cifar10", "resnet18")
    assert recipe == Recipe(epochs=200, milestones=(100, 150), weight_decay=2e-4)  # int(0.5 E), int(0.75 E)
    assert hparams == {"alpha": 1.0, "tau": 1.0, "kl_scale": 1.0, "igdm_code_ard": True}
    method = create_method("ard+igdm", **hparams)
    assert method.bn_mode == "eval" and ARD.bn_mode == "train"  # its PGD runs with BN in eval mode
    assert method.config()["igdm_code_ard"] is True and create_method("ard+igdm").config()["igdm_code_ard"] is False


@pytest.mark.parametrize(("beta", "gamma"), [(1.0, 1.0), (0.5, 2.0)])
def test_the_igdm_codes_ard_distils_the_clean_teacher_on_the_forward_probe(student, teacher, make_batch, reference,
                                                                           close, float64_logits, beta, gamma):
    """KLbm(T(x) || S(x + b d)) at tau 1, kl_scale 1, plus the IGDM term: ard_IGDM_cifar100.py's loss."""
    batch = make_batch(epoch=3, epochs=10)
    xa = (batch.x + 0.1).clamp(0, 1)
    student64, teacher64 = float64_logits(student), float64_logits(teacher)
    term, term_error = igdm_reference(reference, student64, teacher64, batch, xa, 20.0, beta, gamma)
    soft_labels, ahead = teacher64(batch.x), student64(batch.x.double() + beta * (xa - batch.x).double())
    base, base_error = reference.kl_batchmean(soft_labels, ahead), reference.float32_error(1.0, soft_labels, ahead)
    method = IGDM(ARD(alpha=1.0, tau=1.0, kl_scale=1.0), igdm_beta=beta, igdm_gamma=gamma, igdm_code_ard=True)
    close(method.loss(student, batch, xa), base + term, base_error + term_error)
    if beta != 1:  # on S(x + b d), not S(xa)
        on_xa = reference.kl_batchmean(soft_labels, student64(xa)) + term
        assert (on_xa - base - term).abs() > 10 * (base_error + term_error)


def test_the_igdm_codes_ard_attacks_from_a_clamped_uniform_start(student, make_batch):
    method = IGDM(ARD(attack_steps=3), igdm_code_ard=True)
    expected = pgd(lambda xa: F.cross_entropy(student(xa), make_batch(seed=9).y, reduction="sum"),
                   make_batch(seed=9).x, eps=8 / 255, step_size=2 / 255, steps=3, start="uniform",
                   generator=make_batch(seed=9).generator, clamp_start=True)
    torch.testing.assert_close(method.perturb(student, make_batch(seed=9)), expected, rtol=0, atol=0)


def test_igdm_code_ard_is_refused_on_other_bases():
    with pytest.raises(RdistError, match=r"igdm_code_ard .* applies to ard\+igdm, not rslad\+igdm"):
        create_method("rslad+igdm", igdm_code_ard=True)


def test_refuses_a_base_without_igdm_support():
    with pytest.raises(RdistError, match=r"\+igdm works on ard, rslad, adaad; not on iad-i"):
        IGDM(IADI())
