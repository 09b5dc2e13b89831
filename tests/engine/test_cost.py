"""The one training-cost model: passes counted from the methods' own code, FLOPs from the architectures' MACs;
the GPU-hour estimate and the distill header's are two views of it."""

from __future__ import annotations

import pytest

from rdist.data import train_size
from rdist.engine import TrainConfig
from rdist.engine.build import validation_size
from rdist.engine.cost import (ASSUMED_TFLOPS, Passes, count_passes, evaluation_flops, gpu_hours, model_macs,
                               run_cost)
from rdist.methods import create_method, register_method, registry
from tests.methods.test_new_companion import Tutor


def test_passes_are_counted_from_the_method_step():
    passes = count_passes(create_method("rslad", attack_steps=10), 3, 10, epochs=1)
    # Ten attack steps (the input's gradient) and S(xa), S(x) in the loss (the weights'); the clean teacher once,
    # without gradient.
    assert passes == {"student": Passes(input_grad=10, weight_grad=2), "robust": Passes(forward=1)}
    passes = count_passes(create_method("adaad", attack_steps=7), 3, 10, epochs=1)
    assert passes["robust"].input_grad == 7, "AdaAD differentiates through the teacher at every attack step"
    assert count_passes(create_method("akd2", attack_steps=2), 3, 10, epochs=1) == {
        "student": Passes(input_grad=2, weight_grad=1), "robust": Passes(forward=1), "natural": Passes(forward=1)}
    assert count_passes(create_method("sat", attack_steps=3), 3, 10, epochs=1) == {"student": Passes(input_grad=3,
                                                                                                weight_grad=1)}
    assert Passes(forward=1, input_grad=1, weight_grad=1).flops(10) == 2 * 10 + 4 * 10 + 6 * 10


def test_a_companion_is_counted_as_a_trained_network_of_its_own_architecture(monkeypatch):
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    register_method(Tutor)
    assert count_passes(create_method("tutor", attack_steps=3), 3, 10, epochs=1) == {
        "student": Passes(input_grad=3, weight_grad=1), "peer": Passes(weight_grad=1)}
    config = TrainConfig(method="tutor", student="tinycnn", data="digits", epochs=1, eval_n=50, attack_steps=3,
                         select_on="test", companions={"peer": "smallcnn"})
    s, p = model_macs("tinycnn", "digits"), model_macs("smallcnn", "digits")
    assert run_cost(config).image_flops == pytest.approx(4.0 * s * 3 + 6.0 * s + 6.0 * p, rel=1e-12)


def test_training_flops_are_epochs_times_images_times_passes():
    config = TrainConfig(method="rslad", student="tinycnn", data="digits", epochs=3, eval_n=50, attack_steps=2,
                         select_on="test")
    s, t = model_macs("tinycnn", "digits"), model_macs("smallcnn", "digits")
    per_image = 4.0 * s * 2 + 6.0 * s * 2 + 2.0 * t * 1
    per_eval = 50 * (2.0 * s + 20 * 4.0 * s)
    expected = 3 * train_size("digits") * per_image + 3 * per_eval
    assert run_cost(config, {"robust": "smallcnn"}).flops == pytest.approx(expected, rel=1e-12)
    assert gpu_hours(expected) == pytest.approx(expected / (ASSUMED_TFLOPS * 1e12 * 3600))


def test_the_held_out_validation_images_are_evaluated_not_trained():
    config = TrainConfig(method="rslad", student="tinycnn", data="digits", epochs=3, eval_n=50, attack_steps=2,
                         batch_size=128)
    n = train_size("digits")
    n_train = n - validation_size(n, 0.1)
    cost = run_cost(config, {"robust": "smallcnn"})
    assert cost.images == 3 * n_train and cost.steps == 3 * -(-n_train // 128)
    assert cost.flops == pytest.approx(cost.images * cost.image_flops + cost.eval_flops)
    assert cost.flops_per_step == cost.image_flops * 128


def test_a_run_cut_by_max_steps_costs_its_steps():
    config = TrainConfig(method="sat", student="tinycnn", data="digits", epochs=3, select_on="test", eval_n=50,
                         batch_size=128, max_steps=14)  # 12 steps an epoch: one epoch and two steps of the next
    whole = run_cost(TrainConfig(**{**config.__dict__, "max_steps": None}))
    cut = run_cost(config)
    assert (whole.steps, cut.steps) == (36, 14) and cut.images == train_size("digits") + 2 * 128
    assert cut.image_flops == whole.image_flops
    assert cut.eval_flops == pytest.approx(whole.eval_flops * 2 / 3), "the cut epoch is evaluated too"


def test_autoattack_runs_its_later_components_on_the_robust_images_only():
    macs = model_macs("resnet18", "cifar10")
    base = 10 * (2.0 * macs + 20 * 4.0 * macs)
    subset = evaluation_flops("resnet18", "cifar10", 10, "aa:apgd-ce+apgd-t", 0.5)
    assert subset == pytest.approx(base + 10 * (100 + 0.5 * 900) * 4.0 * macs)
    full = evaluation_flops("resnet18", "cifar10", 10, "aa", 0.5)
    assert full == pytest.approx(base + 10 * ((100 + 0.5 * 1800) * 4.0 * macs + 0.5 * 5000 * 2.0 * macs))
