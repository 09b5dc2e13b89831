"""The attack-failure flags on real models: a masked model (a trained digits model whose logits are scaled by 1e4,
so that its softmax saturates in fp32 and the cross-entropy's gradient is exactly zero) fools PGD and is flagged,
with the numbers behind each flag, and exposed by a black-box and a transfer attack; the same model unscaled, and
a model trained for seconds, raise no flag; a randomised model and an under-stepped attack are flagged too."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rdist.attacks import create_attack, evaluate
from rdist.attacks.flags import TRACED_STEPS, UNBOUNDED_IMAGES, Trace, autoattack_flags, trace_flags

EPS = 32 / 255  # digits: 17 grey levels about 16/255 apart
QUICKSTART = ["clean", "pgd20", "aa:apgd-ce+apgd-t"]  # the quickstart's suite


def mask(model: nn.Module, scale: float = 1e4) -> nn.Module:
    """`model` with its logits multiplied by `scale` (the last layer's weights and bias): the same predictions, and
    a softmax that saturates in fp32, so that the cross-entropy gives no gradient on confident images."""
    masked = copy.deepcopy(model)
    with torch.no_grad():
        masked.linear.weight.mul_(scale)
        masked.linear.bias.mul_(scale)
    return masked.eval()


@pytest.fixture(scope="module")
def masked(digits_model):
    return mask(digits_model)


@pytest.fixture(scope="module")
def images(digits):
    return digits.x_test[:100], digits.y_test[:100]


def by_key(result) -> dict:
    return {(f["name"], f["attack"]): f for f in result.flags}


@pytest.mark.e2e
def test_pgd_overstates_a_masked_model_the_flags_fire_and_black_box_attacks_expose_it(masked, digits_model, images):
    x, y = images[0][:50], images[1][:50]
    result = evaluate(masked, x, y, ["clean", "pgd20", "square", "transfer-pgd20"], eps=EPS, surrogate=digits_model)
    accuracy = result.accuracy
    # PGD gets no gradient: it changes nothing, and reports the clean accuracy as robustness.
    assert accuracy["pgd20"] == accuracy["clean"] > 0.9
    # Square (queries only) breaks half of it; PGD crafted on the unscaled model (the same predictions) finds what
    # PGD finds on that model, which is what the masked model's robustness really is.
    assert accuracy["square"] < accuracy["clean"] - 0.3
    unscaled = evaluate(digits_model, x, y, ["clean", "pgd20"], eps=EPS, checks=False).accuracy
    assert unscaled["clean"] == accuracy["clean"] and accuracy["transfer-pgd20"] == unscaled["pgd20"]
    assert accuracy["pgd20"] - unscaled["pgd20"] > 0.2  # what PGD overstated
    flags = by_key(result)
    assert set(flags) == {("zero-gradient", "pgd20"), ("unbounded-attack-fails", None),
                          ("black-box-beats-white-box", "square"), ("black-box-beats-white-box", "transfer-pgd20")}
    correct = round(accuracy["clean"] * len(y))
    assert flags["zero-gradient", "pgd20"]["numbers"] == {"images": correct, "correct": correct, "share": 1.0}
    unbounded = flags["unbounded-attack-fails", None]["numbers"]
    # Every image of the 50 (no more than UNBOUNDED_IMAGES), the correct ones: all stay correct at eps 1.
    assert unbounded["still_correct"] == unbounded["images"] == correct and len(y) <= UNBOUNDED_IMAGES
    for attack in ("square", "transfer-pgd20"):
        numbers = flags["black-box-beats-white-box", attack]["numbers"]
        assert numbers["accuracy"] == pytest.approx(accuracy[attack]) and numbers["white_box"] == "pgd20"
        assert numbers["white_box_accuracy"] == pytest.approx(accuracy["pgd20"])
        # every image it broke survived pgd20, which broke none
        assert numbers["images_only_it_broke"] == round((accuracy["clean"] - accuracy[attack]) * len(y))
        assert flags["black-box-beats-white-box", attack]["message"].startswith(f"{100 * accuracy[attack]:.2f}%")


@pytest.mark.e2e
def test_the_same_model_unscaled_and_a_trained_one_raise_no_flag(digits_model, images):
    x, y = images
    result = evaluate(digits_model, x[:60], y[:60], QUICKSTART, eps=EPS)
    assert result.flags == []
    assert result.accuracy["pgd20"] < result.accuracy["clean"] - 0.2  # the attacks work on it


def test_a_randomised_model_is_flagged(digits_model, images):
    class Noisy(nn.Module):  # a randomised defence: Gaussian noise on the input at test time
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x + 0.3 * torch.randn_like(x))

    x, y = images
    torch.manual_seed(0)
    result = evaluate(Noisy(digits_model), x, y, ["clean"], eps=EPS)
    (flag,) = result.flags
    assert flag["name"] == "randomness" and flag["attack"] is None
    assert 0 < flag["numbers"]["changed"] <= flag["numbers"]["n"] == len(y)


def test_an_attack_still_climbing_at_its_end_is_flagged_unless_a_stronger_one_settles_it(digits_model, images):
    """pgd20 with steps of 0.1/255, observed as the evaluator observes it: its loss still rises at its last step.
    CW, which converges, gets a lower accuracy in the same report: the worst case does not rest on pgd20."""
    x, y = images[0][:50].float() / 255, images[1][:50]
    table = {"clean": (digits_model(x).argmax(1) == y).float()}
    for name, attack in (("pgd20", create_attack("pgd20", digits_model, EPS)), ("cw", create_attack("cw", digits_model,
                                                                                                  EPS))):
        if name == "pgd20":
            attack.step_size = 0.1 / 255
        attack.observer = trace = Trace(attack.steps)
        x_adv = attack(x, y)
        with torch.no_grad():
            survived = digits_model(x_adv).argmax(1) == y
        table[name] = survived.float() * table["clean"]
        table.update({f"check:{name}:{k}": v for k, v in trace.take().items()})
    accuracy = {name: table[name].mean().item() for name in table}
    (flag,) = trace_flags("pgd20", table, {"clean": accuracy["clean"], "pgd20": accuracy["pgd20"]})
    assert flag.name == "incomplete-optimisation" and flag.attack == "pgd20"
    assert flag.numbers["late_gain_share"] > 0.2 and flag.numbers["steps"] == 20
    assert flag.numbers["images"] == round(accuracy["pgd20"] * len(y))
    assert accuracy["cw"] < accuracy["pgd20"] and trace_flags("cw", table, accuracy) == []
    assert trace_flags("pgd20", table, accuracy) == []


def test_the_traced_step_counts_are_those_of_the_attacks(digits_model):
    for name, steps in TRACED_STEPS.items():
        assert create_attack(name, digits_model, EPS).steps == steps


def test_autoattack_messages_become_flags_with_their_counts():
    flags = autoattack_flags("aa", [
        "there are 3 points with zero gradient! This might lead to unreliable evaluation with gradient-based "
        "attacks. See flags_doc.md for details.",
        "there are 2 points with zero gradient! This might lead to unreliable evaluation with gradient-based "
        "attacks. See flags_doc.md for details.",
        "Square Attack has decreased the robust accuracy of 1.50%. This might indicate ...",
        "something else"])
    named = {f.name: f for f in flags}
    assert named["autoattack-zero-gradient"].numbers == {"times": 2, "images": 5}
    assert named["autoattack-square-improves"].numbers == {"times": 1, "decrease_percent": 1.5}
    assert named["autoattack-warning"].message == "pyautoattack: something else"
    assert all(f.attack == "aa" for f in flags)
