"""An experiment as a file: `--config FILE.yaml` on `rdist distill` and `rdist teacher train` (keys are the options'
names, the command line wins, unknown keys are refused), and the resolved config.yaml of every run directory, which
trains the same run again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rdist.artifact import read_metadata
from rdist.engine import LOG, load_checkpoint

TIMING = ("train_seconds", "seconds", "images_per_s")


def log_without_timing(run_dir: Path) -> list[dict]:
    lines = [json.loads(line) for line in (run_dir / LOG).read_text().splitlines()]
    return [{k: v for k, v in line.items() if k not in TIMING} for line in lines]


def write_yaml(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


@pytest.fixture
def experiment(tmp_path, digits_artifact) -> Path:
    """An experiment file as a user writes one: both spellings of keys, a hyper-parameter by its name."""
    return write_yaml(tmp_path / "experiment.yaml", {
        "method": "rslad", "student": "tinycnn", "teacher": str(digits_artifact), "data": "digits", "epochs": 2,
        "batch-size": 64, "steps": 2, "eval_n": 64, "hparam": {"kl_scale": 0.5}, "device": "cpu"})


@pytest.mark.e2e
def test_a_run_from_a_file_writes_its_resolved_config_which_trains_the_same_run_again(cli, experiment, digits_artifact,
                                                                                        tmp_path):
    cli("distill", "--config", experiment, "--out", tmp_path / "first", "--json")
    resolved = yaml.safe_load((tmp_path / "first" / "config.yaml").read_text())
    # Every default filled in, the recipe spelled out, the method's hyper-parameters with their values.
    assert resolved == {
        "method": "rslad", "student": "tinycnn", "teacher": [f"robust={digits_artifact}"], "initial_weights": None,
        "hparam": {"kl_scale": 0.5}, "data": "digits", "data_dir": None, "val_size": 0.1, "select_on": "val",
        "eval_every": 1, "eval_n": 64, "recipe": None, "epochs": 2, "milestones": [1, 2], "lr": 0.1,
        "weight_decay": 2e-4, "batch_size": 64, "swa_start": None, "ema": None, "schedule": "step", "warmup_epochs": 0,
        "nesterov": False, "label_smoothing": 0.0, "extra_data": None, "extra_fraction": None, "max_steps": None,
        "seed": 0, "eps": "8/255", "step_size": "2/255", "steps": 2, "norm": "Linf", "device": "cpu",
        "compile": False, "sync_bn": False, "dist_backend": None}
    assert (tmp_path / "first" / "config.yaml").read_text().startswith("# The resolved configuration of this run")

    cli("distill", "--config", tmp_path / "first" / "config.yaml", "--out", tmp_path / "again", "--json")
    assert log_without_timing(tmp_path / "again") == log_without_timing(tmp_path / "first")
    assert len(log_without_timing(tmp_path / "first")) == 2
    first_best, again_best = (load_file(str(tmp_path / d / "best.safetensors")) for d in ("first", "again"))
    assert all(torch.equal(v, again_best[k]) for k, v in first_best.items())
    assert yaml.safe_load((tmp_path / "again" / "config.yaml").read_text()) == resolved
    assert load_checkpoint(tmp_path / "again")["identity"] == load_checkpoint(tmp_path / "first")["identity"]


def test_options_on_the_command_line_win_over_the_file(cli, experiment, tmp_path):
    cli("distill", "-c", experiment, "--epochs", "1", "--kl-scale", "0.25", "--max-steps", "1",
        "--out", tmp_path / "run", "--json")
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert (resolved["epochs"], resolved["hparam"], resolved["batch_size"]) == (1, {"kl_scale": 0.25}, 64)
    assert read_metadata(tmp_path / "run" / "last.safetensors")["provenance"]["method_config"]["kl_scale"] == 0.25
    # --hparam wins over the file too, by name; a hyper-parameter named as a key joins the file's hparam.
    file = write_yaml(tmp_path / "named.yaml", {**yaml.safe_load(experiment.read_text()), "hparam": None,
                                                "kl-scale": 0.5})
    cli("distill", "--config", file, "--hparam", "kl_scale=0.75", "--epochs", "1", "--max-steps", "1",
        "--out", tmp_path / "hparam", "--json")
    assert yaml.safe_load((tmp_path / "hparam" / "config.yaml").read_text())["hparam"] == {"kl_scale": 0.75}


def test_a_paper_recipe_is_spelled_out_and_teacher_train_takes_a_file_too(cli, tmp_path):
    file = write_yaml(tmp_path / "trades.yaml", {"method": "trades", "arch": "tinycnn", "data": "digits",
                                                  "recipe": "paper", "epochs": 2, "max_steps": 1, "steps": 1,
                                                  "eval_n": 8})
    cli("teacher", "train", "--config", file, "--out", tmp_path / "run", "--json")
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    # TRADES's paper recipe (100 epochs, x0.1 at 75 and 90, wd 2e-4, eps 0.031, step 0.007), scaled to 2 epochs.
    assert {k: resolved[k] for k in ("method", "arch", "recipe", "epochs", "milestones", "lr", "weight_decay",
                                     "batch_size", "eps", "step_size", "steps", "hparam")} == {
        "method": "trades", "arch": "tinycnn", "recipe": "paper", "epochs": 2, "milestones": [2], "lr": 0.1,
        "weight_decay": 2e-4, "batch_size": 128, "eps": 0.031, "step_size": 0.007, "steps": 1,
        "hparam": {"beta": 6.0}}
    assert "teacher" not in resolved and "student" not in resolved
    assert "# The resolved configuration" in (tmp_path / "run" / "config.yaml").read_text()
    assert "rdist teacher train --config config.yaml" in (tmp_path / "run" / "config.yaml").read_text()


@pytest.mark.parametrize("content, fragments", [
    ({"method": "rslad", "batchsize": 64}, ["unknown key 'batchsize' (did you mean: batch_size",
                                            "the keys are the options of `rdist distill`"]),
    ({"method": "rslad", "batch_size": 64, "batch-size": 32}, ["gives batch_size twice"]),
    ({"config": "other.yaml"}, ["'config' is an option of the command line only"]),
    ({"hparam": {"kl_scale": "much"}}, ["hparam kl_scale must be a number, true or false, got 'much'"]),
    ({"kl_scale": 0.5, "hparam": {"kl_scale": 0.25}}, ["gives hyper-parameter kl_scale twice"]),
    (["method", "rslad"], ["must be a mapping of option names to values"]),
    ("method: [rslad\n", ["is not valid YAML at line"]),
])
def test_a_bad_file_is_refused_in_one_line_before_anything_runs(cli, tmp_path, content, fragments):
    file = tmp_path / "bad.yaml"
    file.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    cli.fails(["distill", "--config", file, "--out", tmp_path / "run"], str(file), *fragments, code=2)
    assert not (tmp_path / "run").exists()


def test_a_missing_file_and_a_key_of_another_command_are_refused(cli, tmp_path):
    cli.fails(["distill", "--config", tmp_path / "nothing.yaml"], "cannot read", "nothing.yaml", code=2)
    file = write_yaml(tmp_path / "distill.yaml", {"method": "sat", "student": "tinycnn"})
    cli.fails(["teacher", "train", "--config", file], "unknown key 'student'", "`rdist teacher train`", code=2)
