"""The GPU-hour estimate: passes counted from the methods' own code, FLOPs from the architectures' MACs."""

from __future__ import annotations

import pytest

from rdist.engine import TrainConfig
from rdist.reproduce.cost import (ASSUMED_TFLOPS, TRAIN_IMAGES, Passes, count_passes, evaluation_flops, gpu_hours,
                                  model_macs, training_flops)


def test_passes_are_counted_from_the_method_step():
    student, teacher = count_passes(TrainConfig(method="rslad", student="resnet18", attack_steps=10))
    # Ten attack steps and S(xa), S(x) in the loss, all differentiated; the clean teacher once, without gradient.
    assert student == Passes(forward=0, with_grad=12) and teacher == Passes(forward=1, with_grad=0)
    student, teacher = count_passes(TrainConfig(method="adaad", student="resnet18", attack_steps=7))
    assert teacher.with_grad == 7, "AdaAD differentiates through the teacher at every attack step"
    student, teacher = count_passes(TrainConfig(method="sat", student="resnet18", attack_steps=3))
    assert student == Passes(0, 4) and teacher == Passes(0, 0)


def test_training_flops_are_epochs_times_images_times_passes():
    config = TrainConfig(method="rslad", student="tinycnn", data="digits", epochs=3, eval_n=50, attack_steps=2)
    s, t = model_macs("tinycnn", "digits"), model_macs("smallcnn", "digits")
    per_image = 6.0 * s * (2 + 2) + 2.0 * t * 1
    per_eval = 50 * (2.0 * s + 20 * 6.0 * s)
    expected = 3 * TRAIN_IMAGES["digits"] * per_image + 3 * per_eval
    assert training_flops(config, "smallcnn") == pytest.approx(expected, rel=1e-12)
    assert gpu_hours(expected) == pytest.approx(expected / (ASSUMED_TFLOPS * 1e12 * 3600))


def test_autoattack_runs_its_later_components_on_the_robust_images_only():
    macs = model_macs("resnet18", "cifar10")
    base = 10 * (2.0 * macs + 20 * 6.0 * macs)
    subset = evaluation_flops("resnet18", "cifar10", 10, "aa:apgd-ce+apgd-t", 0.5)
    assert subset == pytest.approx(base + 10 * (100 + 0.5 * 900) * 6.0 * macs)
    full = evaluation_flops("resnet18", "cifar10", 10, "aa", 0.5)
    assert full == pytest.approx(base + 10 * ((100 + 0.5 * 1800) * 6.0 * macs + 0.5 * 5000 * 2.0 * macs))
