"""Each attack does what the evaluation protocol says, on a real model trained for seconds on digits."""

import ast
import inspect
import re
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F

import rdist.attacks

from rdist.attacks import (CW, FGSM, PGD, AutoAttack, Square, Transfer, create_attack, evaluate, margin_loss, pgd,
                           resolve_attacks)
from rdist.attacks.base import Attack, check_adversarial
from rdist.errors import AdversarialBoundsError, RdistError

# Digits have 17 grey levels about 16/255 apart: 8/255 barely hurts a natural model; 32/255 is a real budget.
EPS = 32 / 255


@pytest.fixture(scope="module")
def digits_images(digits):
    """The first 200 digits test images in [0, 1], and their labels."""
    return digits.x_test[:200].float() / 255, digits.y_test[:200]


def test_pgd20_le_fgsm_le_clean_on_a_trained_model(digits_model, digits_images):
    x, y = digits_images
    result = evaluate(digits_model, x, y, ["clean", "fgsm", "pgd20"], eps=EPS)
    acc = result.accuracy
    assert acc["clean"] > 0.9, "the fixture model should be accurate"
    assert acc["pgd20"] <= acc["fgsm"] <= acc["clean"]
    assert acc["pgd20"] < acc["clean"] - 0.2, "pgd20 must hurt a naturally trained model"
    # an example is robust in the worst case only if every attack failed on it: at most the smallest accuracy
    assert result.worst_case <= min(acc.values())


def test_pgd_steps_stay_in_the_ball_and_box(digits_model, digits_images):
    x, y = digits_images
    attack = PGD(digits_model, EPS, generator=torch.Generator().manual_seed(0))
    x_adv = attack(x, y)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert F.cross_entropy(digits_model(x_adv), y) > F.cross_entropy(digits_model(x), y)


def test_fgsm_is_one_full_signed_step_without_random_start(digits_model, digits_images):
    x, y = digits_images
    x = x.clone().requires_grad_(True)
    F.cross_entropy(digits_model(x), y, reduction="sum").backward()
    expected = (x + EPS * x.grad.sign()).clamp(0, 1).detach()
    assert torch.allclose(FGSM(digits_model, EPS)(x.detach(), y), expected)


def test_margin_loss_matches_the_cw_formula():
    logits = torch.tensor([[2.0, 5.0, 1.0], [0.0, -1.0, 3.0]])
    y = torch.tensor([1, 0])
    # z_y - max_{c != y} z_c + kappa, clamped at 0 and negated: 5-2+50 and 0-3+50
    assert torch.allclose(margin_loss(logits, y, kappa=50.0), torch.tensor([-53.0, -47.0]))
    assert torch.allclose(margin_loss(logits, y, kappa=0.0), torch.tensor([-3.0, 0.0]))


def test_cw_maximises_the_margin_loss_not_cross_entropy(digits_model, digits_images):
    x, y = digits_images
    attack = CW(digits_model, EPS, generator=torch.Generator().manual_seed(0))
    assert attack.steps == 30 and attack.kappa == 50.0
    assert torch.allclose(attack.objective(x, y), margin_loss(digits_model(x), y, 50.0).sum())
    x_adv = attack(x, y)
    assert margin_loss(digits_model(x_adv), y).sum() > margin_loss(digits_model(x), y).sum()


@pytest.mark.e2e
def test_autoattack_runs_through_pyautoattack(digits_model, digits_images):
    import pyautoattack

    x, y = digits_images[0][:40], digits_images[1][:40]
    stages = []
    attack = create_attack("aa:apgd-ce", digits_model, EPS, seed=0, on_stage=stages.append)
    assert isinstance(attack.adversary, pyautoattack.AutoAttack)
    assert attack.adversary.attacks_to_run == ["apgd-ce"]
    x_adv = attack(x, y)
    with torch.no_grad():
        clean = (digits_model(x).argmax(1) == y).float().mean()
        robust = (digits_model(x_adv).argmax(1) == y).float().mean()
    assert robust < clean
    assert stages and stages[0].startswith("apgd-ce batch"), "AutoAttack's progress must reach the caller"


def test_standard_autoattack_is_the_four_attack_ensemble(digits_model):
    attack = create_attack("aa", digits_model, EPS)
    assert attack.adversary.attacks_to_run == ["apgd-ce", "apgd-t", "fab-t", "square"]
    assert attack.adversary.square.n_queries == 5000


@pytest.mark.e2e
def test_same_seed_same_numbers(digits_model, digits_images):
    x, y = digits_images
    runs = [evaluate(digits_model, x, y, ["pgd20", "cw"], eps=EPS, batch_size=64, seed=s) for s in (1, 1)]
    assert runs[0].accuracy == runs[1].accuracy
    # the seed drives the random start: the same seed gives the same examples, another seed others
    examples = [create_attack("pgd20", digits_model, EPS, seed=s)(x, y) for s in (1, 1, 2)]
    assert torch.equal(examples[0], examples[1]) and not torch.equal(examples[0], examples[2])


@pytest.mark.e2e
def test_transfer_needs_a_surrogate_and_uses_it(digits_model, digits_images):
    x, y = digits_images
    with pytest.raises(RdistError, match="--surrogate"):
        create_attack("transfer-pgd20", digits_model, EPS)
    # crafted on the model itself, transfer equals the white-box attack with the same seed
    white = evaluate(digits_model, x, y, ["pgd20"], eps=EPS, seed=3)
    transfer = evaluate(digits_model, x, y, ["transfer-pgd20"], eps=EPS, seed=3, surrogate=digits_model)
    assert white.accuracy["pgd20"] == transfer.accuracy["transfer-pgd20"]


def test_the_bounds_check_catches_a_broken_attack():
    x = torch.full((2, 1, 4, 4), 0.5)
    with pytest.raises(AdversarialBoundsError, match="eps-ball"):
        check_adversarial(x + EPS + 1 / 255, x, EPS)
    with pytest.raises(AdversarialBoundsError, match=r"\[0, 1\]"):
        check_adversarial(torch.full_like(x, 1.02), torch.ones_like(x), EPS)
    check_adversarial(x + EPS, x, EPS)


def test_pgd_core_random_starts():
    x = torch.full((1000, 1, 2, 2), 0.5)
    g = torch.Generator().manual_seed(0)
    uniform = pgd(lambda xa: xa.sum(), x, eps=EPS, step_size=0.0, steps=0, start="uniform", generator=g)
    normal = pgd(lambda xa: xa.sum(), x, eps=EPS, step_size=0.0, steps=0, start="normal", generator=g)
    assert (uniform - x).abs().max() > 0.9 * EPS
    assert 0.0008 < (normal - x).std() < 0.0012


def test_suites_and_unknown_names():
    assert resolve_attacks("quick") == ["clean", "fgsm", "pgd20"]
    assert resolve_attacks(None, "pgd20,clean,transfer") == ["clean", "pgd20", "transfer-pgd20", "transfer-cw"]
    with pytest.raises(RdistError, match="pgd20"):
        resolve_attacks(None, "pgd-20")
    with pytest.raises(RdistError, match="apgd-ce"):
        resolve_attacks(None, "aa:apgd")


def _documented_default(text: str):
    """A docstring's "(default: ...)" value: a literal, or a fraction such as 2/255."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return float(Fraction(text))


# Every attack class rdist.attacks exports, so that a new one is held to the same docstring.
ATTACK_CLASSES = [c for c in (getattr(rdist.attacks, name) for name in rdist.attacks.__all__)
                  if inspect.isclass(c) and issubclass(c, Attack) and c is not Attack]


def test_the_documented_attacks_are_every_attack_class():
    assert set(ATTACK_CLASSES) == {PGD, FGSM, CW, AutoAttack, Square, Transfer}


@pytest.mark.parametrize("cls", ATTACK_CLASSES, ids=lambda c: c.__name__)
def test_every_attack_documents_its_paper_distance_arguments_and_use(cls):
    """help(rdist.attacks.X) shows the paper, its official code (or that there is none, as a method's docstring
    says), the distance, every argument with its true default and an example."""
    doc = inspect.getdoc(cls)
    assert re.search(r"\[https://arxiv\.org/abs/\d{4}\.\d{4,5}\]", doc), "a paper link"
    assert re.search(r"^Official code: (https://github\.com/[\w.-]+/[\w.-]+|none)\b", doc, flags=re.M), \
        "an official code line"
    assert "Distance: " in doc and "Shape:" in doc and "\n    >>> " in doc
    arguments = doc.split("Arguments:\n")[1].split("\n\n")[0]
    entries = dict(re.findall(r"^    (\w+) \([^)]*\): (.*?)(?=^    \w+ \(|\Z)", arguments, flags=re.M | re.S))
    parameters = {name: p for name, p in inspect.signature(cls.__init__).parameters.items() if name != "self"}
    assert sorted(entries) == sorted(parameters)
    for name, text in entries.items():
        stated = re.search(r"\(default: (.+?)\)\s*$", text.strip(), flags=re.S)
        if stated:
            assert _documented_default(stated.group(1)) == parameters[name].default, (cls.__name__, name)
