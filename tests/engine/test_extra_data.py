"""Training with generated images (`--extra-data`, `--extra-fraction`) and a weight average (`--ema`): every step
trains on the asked fraction, an epoch is one pass over the real images, a run killed with SIGKILL resumes to the
uninterrupted run's weights, the artifacts say what data and which average made them, and bad files are refused in
one line before anything is written."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import rdist
from rdist.data.mixed import mixed_epoch
from rdist.engine import BEST, LAST, LOG, Callback, TrainConfig, load_checkpoint, read_log
from rdist.engine.build import build_run
from rdist.engine.cost import run_cost
from rdist.engine.trainer import Trainer
from tests.engine.test_resume import KILLED_RUN, ROOT

N_REAL = 1151  # digits' 1438 training images less the 287 held out
MARK = 77  # the one grey level of the marked generated images below


def natural(out: Path, **overrides) -> TrainConfig:
    values = dict(method="natural", student="tinycnn", data="digits", epochs=1, batch_size=64, eval_n=32, out=str(out))
    return TrainConfig(**{**values, **overrides})


def test_every_step_trains_on_the_asked_fraction_and_an_epoch_is_one_pass_over_the_real_images(tmp_path):
    # Generated images of one grey level: after the crop (zero padding of one pixel) and flip, a row is generated
    # iff its pixels are that level or 0, which no real digit is.
    marked = tmp_path / "marked.npz"
    np.savez(marked, image=np.full((300, 8, 8, 1), MARK, np.uint8), label=np.arange(300) % 10)
    config = natural(tmp_path / "run", extra_data=str(marked), extra_fraction=0.7)
    run = build_run(config)
    seen = []
    loss = run.method.loss

    def recording(student, step, xa):
        x = (step.x * 255).round()
        is_generated = ((x == MARK) | (x == 0)).flatten(1).all(1) & ((x == MARK).flatten(1).sum(1) >= 49)
        seen.append((len(step.y), int(is_generated.sum())))
        return loss(student, step, xa)

    run.method.loss = recording
    Trainer(run, Callback()).fit()
    run.close()
    generated = round(0.7 * 64)  # 45 of each batch of 64, 19 real
    steps = math.ceil(N_REAL / (64 - generated))
    assert len(seen) == steps == 61 == read_log(tmp_path / "run" / LOG)[-1].global_step
    assert seen[:-1] == [(64, generated)] * (steps - 1)
    assert seen[-1] == (64, 64 - (N_REAL - (steps - 1) * 19)), "the last batch is filled up with generated images"
    assert sum(n - g for n, g in seen) == N_REAL  # every real image once
    # What the header announces is what the run does.
    assert run_cost(config).steps == steps and mixed_epoch(N_REAL, 64, 0.7) == (steps, steps * 64)


@pytest.mark.e2e
def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_weights_with_extra_data_and_ema(generated_digits,
                                                                                                 tmp_path, cli):
    # SAT (random starts) on mixed batches, the EMA updated every step, the cosine lr after a warm-up stepped every
    # step: everything a resume must restore. Resumed from the command line, as a user would.
    def config(out: Path) -> TrainConfig:
        return TrainConfig(method="sat", student="tinycnn", data="digits", epochs=3, batch_size=128, eval_n=32,
                           attack_steps=2, extra_data=str(generated_digits["deepmind"]), ema=0.9,
                           lr_schedule="cosine", warmup_epochs=1, out=str(out))

    rdist.engine.train(config(tmp_path / "whole"))
    steps_per_epoch = mixed_epoch(N_REAL, 128, 0.7)[0]
    killed = config(tmp_path / "killed").with_absolute_paths()
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(killed.to_dict()),
                              str(steps_per_epoch + 5)], env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 1

    cli("teacher", "train", "--resume", tmp_path / "killed", "--quiet")

    whole, after_kill = load_checkpoint(tmp_path / "whole"), load_checkpoint(tmp_path / "killed")
    assert after_kill["global_step"] == whole["global_step"] == 3 * steps_per_epoch
    for part in ("model", "average"):
        assert whole[part].keys() == after_kill[part].keys()
        for key, value in whole[part].items():
            assert torch.equal(value, after_kill[part][key]), (part, key)
    for name in (LAST, BEST):
        saved_whole, saved_resumed = load_file(str(tmp_path / "whole" / name)), load_file(str(tmp_path / "killed" / name))
        assert all(torch.equal(v, saved_resumed[k]) for k, v in saved_whole.items()), name
    # last.safetensors is the average, with the live BN statistics; not the live weights
    last = load_file(str(tmp_path / "whole" / LAST))
    assert torch.equal(last["features.0.0.weight"], whole["average"]["module.features.0.0.weight"])
    assert not torch.equal(last["features.0.0.weight"], whole["model"]["features.0.0.weight"])
    assert torch.equal(last["features.0.1.running_mean"], whole["model"]["features.0.1.running_mean"])
    assert [r.average for r in read_log(tmp_path / "killed" / LOG)] == ["ema"] * 3


def test_a_command_line_digits_run_names_its_extra_data_and_its_average(generated_digits, tmp_path, cli):
    source = generated_digits["deepmind"]
    result = cli("teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--epochs", "2",
                 "--batch-size", "64", "--eval-n", "32", "--extra-data", source, "--extra-fraction", "0.7", "--ema",
                 "0.995", "--out", tmp_path / "run", "--json")
    assert json.loads(result.stdout)["global_step"] == 2 * 61
    provenance = rdist.read_metadata(tmp_path / "run" / BEST)["provenance"]
    assert provenance["average"] == {"kind": "ema", "decay": 0.995}
    assert provenance["extra_data"] == {"sources": [str(source)], "files": [str(source)], "images": 600,
                                        "layouts": ["NHWC"], "fraction": 0.7}
    identity = load_checkpoint(tmp_path / "run")["identity"]
    assert identity["extra_data"] == {"sources": [str(source)], "images": 600, "fraction": 0.7}


def test_distill_takes_the_recipe_options_and_rdists_own_layout(generated_digits, teacher_files, tmp_path, cli):
    cli("distill", "--method", "rslad", "--student", "tinycnn", "--teacher", teacher_files["robust"],
           "--data", "digits", "--epochs", "2", "--max-steps", "3", "--batch-size", "64", "--steps", "1",
           "--eval-n", "16", "--extra-data", generated_digits["rdist"], "--extra-fraction", "0.5", "--swa-start",
           "1", "--schedule", "cosine", "--warmup-epochs", "1", "--nesterov", "--label-smoothing", "0.1",
           "--out", tmp_path / "run", "--quiet")
    provenance = rdist.read_metadata(tmp_path / "run" / LAST)["provenance"]
    schedule = provenance["schedule"]
    assert (schedule["lr_schedule"], schedule["warmup_epochs"], schedule["nesterov"], schedule["label_smoothing"],
            schedule["swa_start"]) == ("cosine", 1, True, 0.1, 1)
    assert provenance["extra_data"]["layouts"] == ["NCHW"] and provenance["extra_data"]["fraction"] == 0.5
    assert provenance["average"] is None  # stopped inside epoch 1: SWA has averaged nothing yet


def test_the_run_hands_its_label_smoothing_to_the_method(tmp_path):
    run = build_run(natural(tmp_path, label_smoothing=0.2, max_steps=2))
    seen = []
    loss = run.method.loss
    run.method.loss = lambda student, step, xa: seen.append(step.label_smoothing) or loss(student, step, xa)
    Trainer(run, Callback()).fit()
    assert seen == [0.2, 0.2]


@pytest.mark.parametrize("arrays, fragments", [
    ({"image": np.zeros((5, 32, 32, 3), np.uint8), "label": np.zeros(5, np.int64)},
     ("array 'image' must be uint8 images N x H x W x C = N x 8 x 8 x 1",)),
    ({"image": np.zeros((5, 8, 8, 1), np.uint8), "label": np.array([0, 1, 2, 3, 10])},
     ("array 'label' holds label 10, outside the real dataset's classes [0, 10)",)),
    ({"x_train": np.zeros((5, 1, 8, 8), np.float32), "y_train": np.zeros(5, np.int64)},
     ("array 'x_train' must be uint8 images",)),
], ids=["size", "label", "dtype"])
def test_bad_generated_files_are_refused_in_one_line_before_anything_is_written(tmp_path, arrays, fragments, cli):
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    cli.fails(["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--epochs", "1",
               "--extra-data", bad, "--out", tmp_path / "run"], str(bad), *fragments, unchanged=tmp_path)
    assert not (tmp_path / "run").exists()


def test_bad_extra_data_settings_are_refused_in_one_line(generated_digits, tmp_path, cli):
    base = ["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--epochs", "2",
            "--batch-size", "64", "--out", tmp_path / "run"]
    packed = tmp_path / "packed.npz"
    np.savez_compressed(packed, image=np.zeros((5, 8, 8, 1), np.uint8), label=np.zeros(5, np.int64))
    cli.fails([*base, "--extra-data", packed], "is compressed", f"rdist data convert {packed}", unchanged=tmp_path)
    cli.fails([*base, "--extra-data", tmp_path / "absent.npz"], "extra data file not found", unchanged=tmp_path)
    cli.fails([*base, "--extra-fraction", "0.5"], "give the images with --extra-data SOURCE", unchanged=tmp_path)
    cli.fails([*base, "--extra-data", generated_digits["deepmind"], "--extra-fraction", "0.995"],
              "leaves no real image in a batch of 64", unchanged=tmp_path)
    cli.fails([*base, "--ema", "0.99", "--swa-start", "1"], "give one of them", unchanged=tmp_path)
    cli.fails([*base, "--schedule", "linear"], "unknown --schedule 'linear'", unchanged=tmp_path)
    assert not (tmp_path / "run").exists()
