"""B-MTARD and MTARD against the official scripts' formulas (resnet18_mtard_cifar10.py L116-169, MTARD's
mtard_resnet18_cifar10.py L72-100), written again in float64 Python numbers as the official code keeps its state: two
consecutive steps, so that the state the first step leaves (weights, temperatures, first losses) is checked by what
the second computes with it. Then through the engine: kill -9 and resume to the uninterrupted weights and state, and
the command line. tests/engine/test_distributed.py trains it on two ranks; test_forward_count.py and test_step.py
count its forwards and host syncs."""

from __future__ import annotations

import json
import math
import signal

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

import rdist
from rdist.cli.app import app
from rdist.engine import TrainConfig, load_checkpoint, read_log, resume_config, train
from rdist.engine.config import fill_paper_defaults
from rdist.errors import RdistError
from rdist.methods import NATURAL, ROBUST, create_method, method_rows
from rdist.methods.bmtard import BMTARD, MTARD
from tests.engine.test_resume import killed_run
from tests.methods.conftest import NUM_CLASSES


def official_step(state: dict, student_adv, student_clean, teacher_adv, teacher_nat, *, weight_lr: float,
                  temp_lr: float, log_eps: float, mtard: bool, temp_min: float = 1.0, temp_max: float = 10.0):
    """One step of the official loop on float64 logits: its element-mean KLs (the loss it backpropagates) and its
    update of `state` (Python floats: weights, temperatures, first losses), as its lines read."""
    def kl_loss(log_q, p):  # kl_loss(a, b) = -a b + log(b + 1e-5) b, with log_eps for its 1e-5 (0: exact)
        return (-log_q * p + torch.log(p + log_eps) * p).mean()

    def entropy_value(p):
        return (torch.log(p + log_eps) * p).mean()

    p_adv = torch.softmax(teacher_adv / state["temp_adv"], 1)
    p_nat = torch.softmax(teacher_nat / state["temp_nat"], 1)
    loss_adv, loss_nat = kl_loss(torch.log_softmax(student_adv, 1), p_adv), kl_loss(torch.log_softmax(student_clean,
                                                                                                       1), p_nat)
    if not mtard:
        h_adv, h_nat = entropy_value(p_adv).item(), entropy_value(p_nat).item()
        sign = lambda v: math.copysign(1.0, v) if v else 0.0  # noqa: E731 (torch.sign(...).item())
        state["temp_adv"] = max(min(temp_max, state["temp_adv"] - temp_lr * sign(h_adv / h_nat - 1)), temp_min)
        state["temp_nat"] = max(min(temp_max, state["temp_nat"] - temp_lr * sign(h_nat / h_adv - 1)), temp_min)
    state.setdefault("init_adv", loss_adv.item())
    state.setdefault("init_nat", loss_nat.item())
    lhat_adv, lhat_nat = loss_adv.item() / state["init_adv"], loss_nat.item() / state["init_nat"]
    if mtard:  # w_nat follows, w_adv = 1 - w_nat
        state["w_nat"] -= weight_lr * (state["w_nat"] - lhat_nat / (lhat_adv + lhat_nat))
        state["w_adv"] = 1 - state["w_nat"]
    else:  # both follow lhat / mean(lhat), clipped at 0 and renormalised
        avg = (lhat_adv + lhat_nat) / 2
        inv_adv, inv_nat = lhat_adv / avg, lhat_nat / avg
        state["w_nat"] -= weight_lr * (state["w_nat"] - inv_nat / (inv_adv + inv_nat))
        state["w_adv"] -= weight_lr * (state["w_adv"] - inv_adv / (inv_adv + inv_nat))
        state["w_adv"], state["w_nat"] = max(state["w_adv"], 0), max(state["w_nat"], 0)
        coef = 1 / (state["w_adv"] + state["w_nat"])
        state["w_adv"], state["w_nat"] = state["w_adv"] * coef, state["w_nat"] * coef
    return state["w_adv"] * loss_adv + state["w_nat"] * loss_nat


@pytest.mark.parametrize("name, log_eps", [("bmtard", 0.0), ("bmtard", 1e-5), ("mtard", 0.0)])
def test_two_steps_follow_the_official_loss_and_state_update(name, log_eps, make_batch, student, float64_logits,
                                                             close, close_gradients):
    """Step 1 records its losses (the weights stay at 1/2, each relative loss being 1) and moves the temperatures by
    the entropies' ratio; step 2, after an SGD step of the student, at a decayed rate (lr_scale 0.5), uses the new
    temperatures and moves the weights. kl_scale 1/C is the official element mean."""
    rates = dict(weight_lr=0.8, temp_lr=0.25 if name == "bmtard" else 0.0)
    method = create_method(name, kl_scale=1 / NUM_CLASSES, bmtard_code_log_eps=log_eps > 0, **rates)
    method.reset_state(NUM_CLASSES)
    official = {"w_adv": 0.5, "w_nat": 0.5, "temp_adv": 1.0, "temp_nat": 1.0}
    for number, lr_scale in ((1, 1.0), (2, 0.5)):
        step = make_batch(seed=number)
        step.lr_scale = lr_scale
        xa = method.perturb(student.eval(), step)
        reference = float64_logits(student)
        x64, xa64 = step.x.double(), xa.double()
        teacher_adv, teacher_nat = (float64_logits(step.teachers[r])(v) for r, v in ((ROBUST, xa64), (NATURAL, x64)))
        expected = official_step(official, reference(xa64), reference(x64), teacher_adv, teacher_nat,
                                 weight_lr=rates["weight_lr"] * lr_scale, temp_lr=rates["temp_lr"] * lr_scale,
                                 log_eps=log_eps, mtard=name == "mtard")
        loss = method.loss(student.train(), step, xa)
        close(loss, expected, 1e-6)
        loss.backward()
        expected.backward()
        close_gradients(student, reference)
        state = method.state
        torch.testing.assert_close(state["weights"].double(), torch.tensor([official["w_adv"], official["w_nat"]],
                                                                            dtype=torch.float64), rtol=0, atol=1e-6)
        torch.testing.assert_close(state["temperatures"].double(), torch.tensor(
            [official["temp_adv"], official["temp_nat"]], dtype=torch.float64), rtol=0, atol=1e-6)
        torch.testing.assert_close(state["first_losses"].double() / NUM_CLASSES, torch.tensor(
            [official["init_adv"], official["init_nat"]], dtype=torch.float64), rtol=1e-5, atol=0)
        assert bool(state["started"])
        with torch.no_grad():
            for p in student.parameters():
                p -= 0.5 * p.grad
                p.grad = None
    # The state moved as the official one: the weights off 1/2 at step 2; B-MTARD's temperatures off 1 (one warmed
    # from step 1 and clamped at 1 the other way), MTARD's fixed.
    assert abs(official["w_adv"] - 0.5) > 1e-3
    assert (official["temp_adv"] != official["temp_nat"]) == (name == "bmtard")


def test_the_attack_follows_the_official_ce_from_a_small_normal_start(student, make_batch, float64_logits,
                                                                      first_step_follows, check_in_ball):
    batch = make_batch()
    objective = lambda xa64: F.cross_entropy(float64_logits(student)(xa64), batch.y)  # noqa: E731
    first_step_follows(objective, lambda n: BMTARD(attack_steps=n), student.eval(), make_batch)
    start = BMTARD(attack_steps=0).perturb(student, make_batch(seed=5))
    assert 0 < (start - batch.x).abs().max() < 0.01  # x + 0.001 N(0, 1), unclamped
    check_in_ball(BMTARD().perturb(student, batch), batch.x, BMTARD().eps)


def test_defaults_recipe_teachers_and_refusals():
    assert BMTARD.defaults() == {"kl_scale": 0.1, "weight_lr": 0.025, "temp_lr": 0.001, "temp_min": 1.0,
                                 "temp_max": 10.0, "ratio_power": 1.0, "bmtard_code_log_eps": False}
    assert MTARD.defaults()["temp_lr"] == 0.0 and MTARD.teachers == BMTARD.teachers == (ROBUST, NATURAL)
    for cls in (BMTARD, MTARD):
        recipe = cls.paper_preset("cifar100", "resnet18")[0]
        assert (recipe.epochs, recipe.milestones, recipe.weight_decay, recipe.batch_size) == (300, (215, 260, 285),
                                                                                              2e-4, 128)
    config, _ = fill_paper_defaults(TrainConfig(method="b-mtard", student="resnet18"))
    assert config.method == "bmtard" and config.teachers == {ROBUST: "Zhang2019Theoretically", NATURAL: "Standard"}
    row = next(r for r in method_rows() if r["method"] == "bmtard")
    assert "ResNet-56 that RobustBench does not hold" in row["note"] and row["aliases"] == "b-mtard"
    with pytest.raises(RdistError, match=r"method bmtard: weight_lr must be in \[0, 1\]"):
        BMTARD(weight_lr=2.0)
    with pytest.raises(RdistError, match=r"method mtard: temperatures start at 1, so temp_min must be in \(0, 1\]"):
        MTARD(temp_min=2.0)


def test_both_teachers_one_hot_leave_the_temperatures_where_they_are(make_batch, student):
    """The entropy ratio 0/0 (both tempered teachers one-hot): the official NaN would jump to temp_max."""
    step = make_batch()
    step.teachers = {role: (lambda x: 1e4 * F.one_hot(torch.arange(len(x)) % NUM_CLASSES, NUM_CLASSES).float())
                     for role in (ROBUST, NATURAL)}
    method = BMTARD()
    method.reset_state(NUM_CLASSES)
    method.loss(student, step, step.x)
    assert torch.equal(method.state["temperatures"], torch.ones(2))


def _teacher(path, seed: int) -> str:
    torch.manual_seed(seed)
    return str(rdist.save_model(rdist.create_model("smallcnn", num_classes=10, in_channels=1), path, dataset="digits",
                                input_shape=[1, 8, 8]))


@pytest.fixture
def teachers(tmp_path) -> dict[str, str]:
    return {ROBUST: _teacher(tmp_path / "robust.safetensors", 1), NATURAL: _teacher(tmp_path / "natural.safetensors",
                                                                                   2)}


@pytest.mark.e2e
def test_a_killed_run_resumes_to_the_uninterrupted_weights_and_state(teachers, tmp_path):
    def config(out) -> TrainConfig:  # 18 steps an epoch; the decay at the milestone moves the rates too
        return TrainConfig(method="bmtard", student="tinycnn", data="digits", teachers=teachers, epochs=2,
                           milestones=(1,), batch_size=64, lr=0.05, attack_steps=2, eval_n=32, out=str(out),
                           method_args={"temp_lr": 0.01, "weight_lr": 0.5})

    uninterrupted = train(config(tmp_path / "whole"))
    process = killed_run(config(tmp_path / "killed"), uninterrupted.global_step // 2 + 5)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 1

    resumed = train(resume_config(tmp_path / "killed"))

    assert resumed.global_step == uninterrupted.global_step and resumed.epochs_done == 2
    whole, after_kill = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "killed")
    for part in ("model", "method_state"):
        assert whole[part].keys() == after_kill[part].keys()
        assert all(torch.equal(v, after_kill[part][k]) for k, v in whole[part].items()), part
    state = whole["method_state"]
    assert set(state) == {"weights", "temperatures", "first_losses", "started"} and state["started"]
    assert state["weights"][0] != 0.5 and not torch.equal(state["temperatures"], torch.ones(2))
    assert [r.epoch for r in read_log(tmp_path / "killed" / "log.jsonl")] == [1, 2]


def test_the_command_line_distils_with_two_teachers_and_lists_the_natural_teacher_note(teachers, tmp_path):
    result = CliRunner().invoke(app, [
        "distill", "--method", "bmtard", "--student", "tinycnn", "--data", "digits", "--teacher", teachers[ROBUST],
        "--natural-teacher", teachers[NATURAL], "--epochs", "1", "--batch-size", "128", "--steps",
        "2", "--eval-n", "16", "--hparam", "temp_lr=0.01", "--device", "cpu", "--out", str(tmp_path / "run"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["global_step"] == 9  # one epoch of 1,150 images
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["identity"]["teachers"] == teachers and checkpoint["method_state"]["started"]
    assert checkpoint["config"]["method_args"] == {"temp_lr": 0.01}
    listed = CliRunner().invoke(app, ["distill", "--list"]).output
    assert "bmtard: note: the official natural teacher is a ResNet-56 that RobustBench does not hold" in listed
    assert "mtard: note: the official natural teacher is a WRN-34-10" in listed


def test_its_reproduction_names_both_teachers(tmp_path):
    """reproductions.yaml's natural_teacher: required by the methods that take one, refused by the others, handed to
    the student's run."""
    import yaml

    from rdist.catalogues import catalogue_path
    from rdist.reproduce import REPRODUCTIONS, check_entry
    from rdist.reproduce.runner import estimated_gpu_hours, student_config

    entry = REPRODUCTIONS.find("bmtard-resnet18-cifar10", path=catalogue_path("reproductions.yaml"))
    check_entry(entry)
    assert (entry.teacher, entry.natural_teacher, entry.teacher_label) == (
        "Zhang2019Theoretically", "Standard", "Zhang2019Theoretically + Standard")
    config = student_config(entry, select_on="test", device=None, teacher="robust.safetensors",
                            natural_teacher="natural.safetensors")
    assert config.teachers == {ROBUST: "robust.safetensors", NATURAL: "natural.safetensors"}
    without = entry.model_copy(update={"natural_teacher": None})
    assert 1 < estimated_gpu_hours(entry) < 10  # a WRN-34-10 and a WRN-28-10 forward on every batch, for 300 epochs
    with pytest.raises(RdistError, match="reproduction 'bmtard-resnet18-cifar10': bmtard needs a natural_teacher"):
        check_entry(without)
    rslad = {"name": "x", "method": "rslad", "teacher": "Zhang2019Theoretically", "natural_teacher": "Standard",
             "student": "resnet18", "dataset": "cifar10", "select_on": "val", "evaluation": {"n": 10, "eps": "8/255"},
             "published": {"aa": 10.0}, "source": {"paper": "p", "table": "t"}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump({"reproductions": [rslad]}))
    (entry,) = REPRODUCTIONS.load(tmp_path / "r.yaml")
    with pytest.raises(RdistError, match="reproduction 'x': rslad takes no natural_teacher"):
        check_entry(entry)
