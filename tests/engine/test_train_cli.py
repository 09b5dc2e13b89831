"""`rdist teacher train` and `rdist distill` end to end, and a one-line error with exit code 1 for each bad input."""

from __future__ import annotations

import json

import pytest
import torch

import rdist
from rdist.engine import read_log
from rdist.methods import create_method

SHORT = ["--data", "digits", "--epochs", "1", "--batch-size", "64", "--steps", "2", "--eval-n", "32"]


def test_teacher_train_then_distill(cli, tmp_path):
    teacher_dir, student_dir = tmp_path / "teacher", tmp_path / "student"
    result = cli("teacher", "train", "--method", "natural", "--arch", "smallcnn", *SHORT, "--out", teacher_dir,
                 "--json")
    summary = json.loads(result.output)
    assert summary["best_path"] == str(teacher_dir / "best.safetensors") and summary["epochs_done"] == 1

    result = cli("distill", "--method", "rslad+igdm", "--student", "tinycnn", "--teacher",
                 teacher_dir / "best.safetensors", "--igdm-alpha", "5", *SHORT, "--out", student_dir)
    assert "epoch 1/1" in result.output and "val clean" in result.output  # the progress bar, on stderr
    assert "best.safetensors: epoch 1" in result.output
    meta = rdist.read_metadata(student_dir / "best.safetensors")
    assert meta["provenance"]["method_config"]["igdm_alpha"] == 5.0
    assert meta["provenance"]["teacher"] == str(teacher_dir / "best.safetensors")
    assert len(read_log(student_dir / "log.jsonl")) == 1


@pytest.mark.e2e
@pytest.mark.parametrize("method", ["saad", "dgad"])
def test_the_newest_methods_distil_from_the_command_line(cli, method, robust_teacher, tmp_path):
    # As the README types it, with a robust digits teacher (TRADES smallcnn, trained by the engine's fixture).
    result = cli("distill", "--method", method, "--student", "tinycnn", "--teacher", robust_teacher, "--data",
                 "digits", "--epochs", "2", "--out", tmp_path / "run", "--json")
    assert json.loads(result.stdout)["epochs_done"] == 2
    log = read_log(tmp_path / "run" / "log.jsonl")
    assert [record.epoch for record in log] == [1, 2] and all(0 < record.train_loss < 100 for record in log)
    provenance = rdist.read_metadata(tmp_path / "run" / "last.safetensors")["provenance"]
    assert provenance["method"] == method and provenance["teacher"] == str(robust_teacher)
    assert provenance["method_config"] == create_method(method).config()  # the paper's hyper-parameters


def test_one_progress_display_follows_every_seed(cli, tmp_path, monkeypatch):
    # Each seed's display stops when its run ends (on_run_end), before the next one's starts.
    import rdist.cli.run_progress as progress

    displays, new_progress = [], progress.new_progress
    monkeypatch.setattr(progress, "new_progress", lambda: displays.append(new_progress()) or displays[-1])
    result = cli("teacher", "train", "--method", "natural", "--arch", "tinycnn", *SHORT, "--seeds", "0,1",
                 "--out", tmp_path)
    for seed in (0, 1):
        assert f"training: 1 epoch of 18 steps, run directory {tmp_path / f'seed-{seed}'}" in result.output
    assert result.output.count("epoch 1/1  loss") == 2 and result.output.count("finished: 1 epochs") == 2
    assert len(displays) == 2 and not any(display.live.is_started for display in displays)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    rdist.save_model(rdist.create_model("smallcnn", in_channels=1), path, dataset="digits", input_shape=[1, 8, 8])
    return path


def test_unknown_method_suggests_close_names(cli, teacher_file):
    cli.fails(["distill", "--method", "rsald", "--student", "tinycnn", "--teacher", teacher_file, *SHORT],
              "unknown method 'rsald'", "rslad")


def test_unknown_student_suggests_close_names(cli, teacher_file):
    cli.fails(["distill", "--method", "rslad", "--student", "tinycn", "--teacher", teacher_file, *SHORT],
              "unknown architecture 'tinycn'", "tinycnn")


def test_teacher_method_in_distill_points_to_teacher_train(cli):
    cli.fails(["distill", "--method", "trades", "--student", "tinycnn", *SHORT], "rdist teacher train --method trades")


def test_igdm_on_a_base_without_it_is_refused(cli, teacher_file):
    cli.fails(["distill", "--method", "kd+igdm", "--student", "tinycnn", "--teacher", teacher_file, *SHORT],
              "+igdm does not work on kd")


def test_hyper_parameter_the_method_lacks_is_refused(cli, teacher_file):
    cli.fails(["distill", "--method", "rslad", "--student", "tinycnn", "--teacher", teacher_file, "--tau", "4", *SHORT],
              "rslad has no hyper-parameter", "tau")


@pytest.mark.parametrize("classes, channels, size, message", [
    (100, 1, 8, "has 100 classes but dataset digits has 10"),
    (10, 3, 32, "takes inputs of shape (3, 32, 32) but dataset digits has (1, 8, 8)"),
])
def test_teacher_that_does_not_fit_the_data_is_refused(cli, classes, channels, size, message, tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    rdist.save_model(rdist.create_model("smallcnn", num_classes=classes, in_channels=channels), teacher,
                     dataset="other", input_shape=[channels, size, size])
    cli.fails(["distill", "--method", "ard", "--student", "tinycnn", "--teacher", teacher, *SHORT], message)


@pytest.mark.parametrize("method", ["akd2", "iad-ii"])
def test_missing_natural_teacher_is_refused(cli, method, teacher_file):
    cli.fails(["distill", "--method", method, "--student", "tinycnn", "--teacher", teacher_file, *SHORT],
              f"{method} needs a naturally trained teacher", "--natural-teacher")


def test_resume_of_a_directory_that_is_not_a_run_is_refused(cli, tmp_path):
    cli.fails(["distill", "--resume", tmp_path], "not a run directory")


def test_resume_of_a_run_of_another_method_is_refused(cli, teacher_file, tmp_path):
    cli("distill", "--method", "rslad", "--student", "tinycnn", "--teacher", teacher_file, *SHORT,
        "--out", tmp_path, "--quiet")
    cli.fails(["distill", "--method", "ard", "--resume", tmp_path], "it is a run of method rslad, not ard")
    cli.fails(["distill", "--resume", tmp_path, "--seed", "1"], "configuration differs: seed 0 (run) vs 1 (now)")


def test_non_finite_loss_is_a_one_line_error_naming_the_step(cli, teacher_file, tmp_path):
    cli.fails(["distill", "--method", "rslad", "--student", "tinycnn", "--teacher", teacher_file,
               *SHORT, "--lr", "1e30", "--out", tmp_path, "--quiet"], "at step 2 (epoch 1", "--lr")


def test_missing_method_and_epochs_are_named(cli, teacher_file):
    cli.fails(["distill", "--student", "tinycnn"], "--method is required")
    cli.fails(["teacher", "train", "--method", "sat", "--data", "digits"], "--arch is required")
    cli.fails(["teacher", "train", "--method", "sat", "--arch", "smallcnn", "--data", "digits"],
              "--epochs N", "--recipe paper")


def test_paper_recipe_is_applied(cli, tmp_path):
    result = cli("teacher", "train", "--method", "sat", "--arch", "tinycnn", "--recipe", "paper", "--epochs",
                 "2", "--max-steps", "1", "--data", "digits", "--steps", "1", "--eval-n", "8", "--out", tmp_path,
                 "--json")
    meta = rdist.read_metadata(tmp_path / "last.safetensors")
    # SAT's paper recipe: 200 epochs, x0.1 at 100 and 150, weight decay 2e-4, batch 128: scaled to 2 epochs.
    assert meta["provenance"]["schedule"] == {"epochs": 2, "milestones": [1, 2], "lr": 0.1, "weight_decay": 2e-4,
                                              "batch_size": 128, "swa_start": None, "ema": None,
                                              "lr_schedule": "step", "warmup_epochs": 0, "nesterov": False,
                                              "label_smoothing": 0.0}
    assert torch.isfinite(torch.tensor(json.loads(result.output)["history"][0]["train_loss"]))


def test_unreadable_device_is_refused(cli, tmp_path):
    cli.fails(["teacher", "train", "--method", "natural", "--arch", "tinycnn", *SHORT, "--device", "bogus",
               "--out", tmp_path / "run"], "cannot read device 'bogus'")
    assert not (tmp_path / "run").exists()
