"""Schedules: the papers' recipes, their shortened versions, and the short-run defaults."""

from __future__ import annotations

import math

import pytest
import torch

from rdist.engine import TrainConfig, resolve_schedule
from rdist.engine.build import build_run, resolve_method
from rdist.engine.schedule import build_optimizer
from rdist.errors import RdistError
from rdist.methods import create_method


def schedule(method: str, **config):
    return resolve_schedule(TrainConfig(method=method, student="tinycnn", **config), create_method(method).recipe)


def test_paper_recipes_follow_the_spec():
    akd2 = schedule("akd2", recipe="paper")
    assert (akd2.epochs, akd2.milestones, akd2.weight_decay, akd2.swa_start) == (200, (50, 150), 5e-4, 56)
    rslad = schedule("rslad", recipe="paper")
    assert (rslad.epochs, rslad.milestones, rslad.lr, rslad.batch_size) == (300, (215, 260, 285), 0.1, 128)
    # The IGDM code's recipe for each base (its rslad variant decays at 0.7, 0.86 and 0.95 of 300 epochs).
    assert paper_run("rslad+igdm")[1].milestones == (210, 258, 285)


def test_a_shortened_paper_recipe_keeps_its_proportions_and_explicit_values_win():
    akd2 = schedule("akd2", recipe="paper", epochs=20, lr=0.05)
    assert (akd2.milestones, akd2.swa_start, akd2.lr) == ((5, 15), 6, 0.05)


def paper_run(method: str, student: str = "resnet18", data: str = "cifar10", **config):
    """The method and schedule of a `--recipe paper` run, as the engine builds them (no data is loaded)."""
    config = TrainConfig(method=method, student=student, data=data, recipe="paper", **config)
    built, recipe = resolve_method(config)
    return built, resolve_schedule(config, recipe)


def test_paper_recipe_follows_the_student_architecture():
    wrn, wrn_schedule = paper_run("mart", student="wrn-34-10")
    resnet, resnet_schedule = paper_run("mart", student="resnet18")
    assert (wrn.beta, wrn_schedule.weight_decay) == (6.0, 7e-4)
    assert (resnet.beta, resnet_schedule.weight_decay, resnet_schedule.lr) == (5.0, 3.5e-3, 0.01)
    assert wrn_schedule.milestones == (75, 90)
    # ResNet-18: the official train_resnet.py's 120 epochs with lr x0.1 at 75, 90 and 100
    assert (resnet_schedule.epochs, resnet_schedule.milestones) == (120, (75, 90, 100))


def test_paper_recipe_follows_the_dataset_through_igdm_too():
    assert paper_run("adaad", data="cifar100")[0].kl_scale == 1.0
    assert paper_run("adaad", data="cifar10")[0].kl_scale == 0.1
    igdm, schedule = paper_run("adaad+igdm", data="cifar100")
    assert igdm.base.kl_scale == 1.0 and igdm.igdm_alpha == 20.0
    assert (schedule.epochs, schedule.weight_decay) == (200, 2e-4)  # the IGDM code's, not AdaAD's 5e-4


def test_hyper_parameters_the_user_gave_win_over_the_paper_preset():
    mart, schedule = paper_run("mart", student="wrn-34-10", method_args={"beta": 4.0}, weight_decay=1e-4)
    assert (mart.beta, schedule.weight_decay) == (4.0, 1e-4)
    assert paper_run("adaad", data="cifar100", method_args={"kl_scale": 0.5})[0].kl_scale == 0.5
    assert paper_run("adaad", data="cifar100", method_args={"kl_scale": None})[0].kl_scale == 1.0  # None: not given


def test_without_the_paper_recipe_the_class_defaults_hold():
    config = TrainConfig(method="mart", student="resnet18", data="cifar100", epochs=4)
    mart, recipe = resolve_method(config)
    short = resolve_schedule(config, recipe)
    assert mart.beta == 6.0 and (short.weight_decay, short.lr) == (3.5e-3, 0.01)  # the recipe's pair
    adaad, _ = resolve_method(TrainConfig(method="adaad", student="resnet18", data="cifar100", epochs=4))
    assert adaad.kl_scale == 0.1


def test_short_run_defaults():
    s = schedule("trades", epochs=8)
    assert (s.milestones, s.lr, s.batch_size, s.weight_decay, s.swa_start) == ((4, 6), 0.1, 128, 2e-4, None)
    with pytest.raises(RdistError, match="--epochs N.*--recipe paper"):
        schedule("trades")
    with pytest.raises(RdistError, match="unknown recipe 'papers' \\(did you mean: paper"):
        schedule("trades", recipe="papers")


def test_lr_falls_tenfold_after_each_milestone_epoch():
    s = schedule("sat", epochs=4)  # milestones (2, 3)
    optimizer, scheduler = build_optimizer(torch.nn.Linear(2, 2), s, steps_per_epoch=1)
    lrs = []
    for _ in range(s.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs == pytest.approx([0.1, 0.1, 0.01, 0.001])
    assert optimizer.param_groups[0]["momentum"] == 0.9


def test_paper_recipe_attacks_like_the_official_trades_and_mart_scripts():
    for method, student in (("trades", "wrn-34-10"), ("mart", "resnet18"), ("mart", "wrn-34-10")):
        built, _ = paper_run(method, student=student)
        assert (built.eps, built.step_size, built.attack_steps) == (0.031, 0.007, 10), (method, student)
    rslad, _ = paper_run("rslad")
    assert (rslad.eps, rslad.step_size, rslad.attack_steps) == (8 / 255, 2 / 255, 10)


def test_attack_options_the_user_gave_win_over_the_paper_recipe():
    trades, _ = paper_run("trades", eps=8 / 255, attack_steps=5)
    assert (trades.eps, trades.step_size, trades.attack_steps) == (8 / 255, 0.007, 5)
    mart, _ = paper_run("mart", step_size=0.003)
    assert (mart.eps, mart.step_size) == (0.031, 0.003)


def test_without_the_paper_recipe_trades_and_mart_attack_at_the_defaults():
    for method in ("trades", "mart"):
        built, _ = resolve_method(TrainConfig(method=method, student="resnet18", epochs=4))
        assert (built.eps, built.step_size, built.attack_steps) == (8 / 255, 2 / 255, 10)


def test_the_run_evaluates_at_and_stores_the_resolved_attack(tmp_path):
    run = build_run(TrainConfig(method="trades", student="tinycnn", data="digits", recipe="paper", epochs=1,
                                eval_n=8, out=str(tmp_path)))
    assert (run.config.eps, run.config.step_size, run.config.attack_steps) == (0.031, 0.007, 10)
    assert run.identity()["method"]["eps"] == 0.031
    assert run.config.to_dict()["eps"] == 0.031  # what the checkpoint stores


def test_paper_recipe_of_each_igdm_method_is_the_igdm_codes():
    ard, ard_schedule = paper_run("ard+igdm", data="cifar100")
    assert ard.igdm_code_ard and ard.bn_mode == "eval"
    assert (ard.base.alpha, ard.base.tau, ard.base.kl_scale) == (1, 1, 1)
    assert (ard_schedule.epochs, ard_schedule.milestones, ard_schedule.weight_decay) == (200, (100, 150), 2e-4)
    rslad, rslad_schedule = paper_run("rslad+igdm", data="cifar100")
    assert rslad.base.kl_scale == 0.1 and (rslad_schedule.epochs, rslad_schedule.weight_decay) == (300, 2e-4)
    assert paper_run("rslad+igdm", epochs=200)[1].milestones == (140, 172, 190)  # the code's int(0.7 * 200), ...
    for igdm in (ard, rslad):
        assert (igdm.eps, igdm.step_size, igdm.attack_steps, igdm.igdm_alpha) == (8 / 255, 2 / 255, 10, 20.0)


def test_without_the_paper_recipe_ard_igdm_composes_with_rdists_ard_and_given_values_win():
    composition, _ = resolve_method(TrainConfig(method="ard+igdm", student="resnet18", epochs=4))
    assert not composition.igdm_code_ard and composition.bn_mode == "train" and composition.base.tau == 30.0
    assert composition.config()["igdm_code_ard"] is False  # every hyper-parameter of the term is in the identity
    given, _ = paper_run("ard+igdm", method_args={"tau": 30.0, "igdm_gamma": 0.5})
    assert given.igdm_code_ard and given.base.tau == 30.0 and given.igdm_gamma == 0.5


def lrs_of_a_run(s, steps_per_epoch: int) -> list[float]:
    """The lr of every optimiser step of schedule `s`, stepped as the trainer steps it (after each update)."""
    optimizer, scheduler = build_optimizer(torch.nn.Linear(2, 2), s, steps_per_epoch)
    lrs = []
    for _ in range(s.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_cosine_after_a_linear_warm_up_is_the_official_closed_form():
    s = schedule("trades", epochs=5, lr=0.4, lr_schedule="cosine", warmup_epochs=1, nesterov=True)
    assert (s.milestones, s.lr_schedule, s.warmup_epochs, s.nesterov) == ((), "cosine", 1, True)
    # DeepMind's get_cosine_schedule: lr t / W over the first W steps, then lr (1 + cos(pi (t - W) / (T - W))) / 2.
    spe, warmup, total = 4, 4, 20
    expected = [0.4 * t / warmup if t < warmup else 0.4 * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
                for t in range(total)]
    assert lrs_of_a_run(s, spe) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert expected[0] == 0 and expected[warmup] == pytest.approx(0.4) and expected[-1] > 0
    optimizer, _ = build_optimizer(torch.nn.Linear(2, 2), s, spe)
    assert optimizer.param_groups[0]["nesterov"] is True


def test_the_step_schedule_with_a_warm_up_ramps_then_falls_at_its_milestones():
    s = schedule("sat", epochs=4, warmup_epochs=1)  # milestones (2, 3)
    expected = [0.1 * t / 3 for t in range(3)] + [0.1] * 3 + [0.01] * 3 + [0.001] * 3
    assert lrs_of_a_run(s, 3) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_recipe_options_resolve_and_bad_ones_are_refused():
    # An average given explicitly replaces the recipe's (AKD2's SWA from epoch 56).
    akd2 = schedule("akd2", recipe="paper", ema=0.995)
    assert (akd2.ema, akd2.swa_start, akd2.average) == (0.995, None, {"kind": "ema", "decay": 0.995})
    assert schedule("akd2", recipe="paper").average == {"kind": "swa", "start": 56}
    short = schedule("trades", epochs=8, label_smoothing=0.1)
    assert (short.label_smoothing, short.lr_schedule, short.warmup_epochs, short.nesterov) == (0.1, "step", 0, False)
    with pytest.raises(RdistError, match="--warmup-epochs 8 leaves none of the run's 8 epochs"):
        schedule("trades", epochs=8, warmup_epochs=8)
    for values, message in (({"lr_schedule": "cosin"}, r"unknown --schedule 'cosin' \(did you mean: cosine"),
                            ({"ema": 1.0}, r"--ema is the decay of the moving average, in \(0, 1\)"),
                            ({"ema": 0.99, "swa_start": 3}, "--ema and --swa-start each choose"),
                            ({"label_smoothing": 1.0}, r"--label-smoothing must be in \[0, 1\)"),
                            ({"extra_fraction": 0.5}, "give the images with --extra-data SOURCE"),
                            ({"extra_data": "x.npz", "extra_fraction": 1.0}, r"--extra-fraction must be in \[0, 1\)")):
        with pytest.raises(RdistError, match=message):
            TrainConfig(method="trades", student="tinycnn", epochs=8, **values).validate()
