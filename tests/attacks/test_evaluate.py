"""The evaluator's fast path keeps its numbers: attacks built once per evaluation and reseeded per batch draw what
a fresh attack per batch drew, bf16 is opt-in and stays inside the eps-ball, and `auto` batches resolve."""

from __future__ import annotations

import pytest
import torch

from rdist.attacks import create_attack, evaluate
from rdist.attacks import evaluator
from rdist.attacks.evaluator import auto_batch_size
from rdist.device import model_layout
from rdist.errors import RdistError

EPS = 32 / 255


@pytest.fixture(scope="module")
def digits_images(digits):
    """The first 150 digits test images in [0, 1], and their labels."""
    return digits.x_test[:150].float() / 255, digits.y_test[:150]


@pytest.mark.parametrize("name", ["pgd20", pytest.param("cw", marks=pytest.mark.e2e),
                                  pytest.param("aa:apgd-ce", marks=pytest.mark.e2e)])
def test_one_attack_per_evaluation_draws_what_one_attack_per_batch_drew(name, digits_model, digits_images,
                                                                        monkeypatch):
    x, y = digits_images[0][:60], digits_images[1][:60]
    built = []
    monkeypatch.setattr(evaluator, "create_attack",
                        lambda *args, **kwargs: built.append(args[0]) or create_attack(*args, **kwargs))
    result = evaluate(digits_model, x, y, ["clean", name], eps=EPS, batch_size=24, seed=5)
    assert built == [name]  # three batches (24, 24, 12), one attack object
    # The protocol as written before: a fresh attack per batch, seeded from the batch's first index.
    digits_model.eval()
    correct = []
    for start in range(0, len(x), 24):
        attack = create_attack(name, digits_model, EPS, seed=5 * 100_003 + start)
        xb, yb = x[start:start + 24], y[start:start + 24]
        x_adv = attack(xb, yb)
        with torch.no_grad():
            correct.append((digits_model(x_adv).argmax(1) == yb) & (digits_model(xb).argmax(1) == yb))
    assert result.accuracy[name] == pytest.approx(torch.cat(correct).float().mean().item(), abs=0)


@pytest.mark.e2e
def test_bf16_is_opt_in_and_close_to_fp32(digits_model, digits_images):
    x, y = digits_images
    fp32 = evaluate(digits_model, x, y, ["clean", "pgd20"], eps=EPS, seed=1)
    bf16 = evaluate(digits_model, x, y, ["clean", "pgd20"], eps=EPS, seed=1, precision="bf16")
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    # bf16 rounds logits to 3 significant digits: a few examples near the boundary may flip, no more.
    for name in ("clean", "pgd20"):
        assert abs(bf16.accuracy[name] - fp32.accuracy[name]) <= 0.05, name
    with pytest.raises(RdistError, match="unknown precision 'fp16'"):
        evaluate(digits_model, x, y, ["clean"], precision="fp16")


@pytest.mark.e2e
def test_bf16_attacks_stay_in_the_eps_ball(digits_model, digits_images):
    x, y = digits_images[0][:16], digits_images[1][:16]  # bf16 on a CPU is emulated and slow: the ball is per image
    for name in ("pgd20", "cw", "aa:apgd-ce"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x_adv = create_attack(name, digits_model.eval(), EPS, seed=0)(x, y)  # checks ball and box itself
        assert x_adv.dtype == torch.float32
        assert (x_adv - x).abs().max() <= EPS + 1e-6


def test_auto_batch_size_on_the_cpu_is_the_default_and_is_reported(digits_model, digits_images):
    x, y = digits_images
    assert auto_batch_size(digits_model, x, y) == 150  # min(256, len(x)): memory does not bound a CPU batch
    result = evaluate(digits_model, x, y, ["clean"], batch_size="auto")
    assert result.batch_size == 150 and result.to_dict()["batch_size"] == 150


def test_inputs_follow_the_model_layout(digits_model):
    assert model_layout(digits_model) == torch.contiguous_format
    channels_last = digits_model.to(memory_format=torch.channels_last)
    try:
        assert model_layout(channels_last) == torch.channels_last
    finally:
        digits_model.to(memory_format=torch.contiguous_format)
