"""`--log tensorboard` and `--log wandb` with the real packages, offline: what they record equals log.jsonl, and a
resumed run goes on in the same tracker run (its id kept in the checkpoint); a missing package is one line naming
the extra to install."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from rdist.engine import LOG, load_checkpoint, read_log
from rdist.engine.trackers import epoch_scalars

STEPS_PER_EPOCH = 18  # digits: 1151 training images at batch 64
# Two epochs of a small natural run, cut by --max-steps in the second: its checkpoint holds epoch 1.
RUN = ["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--epochs", "2",
       "--batch-size", "64", "--eval-n", "64"]


def cut_then_resumed(cli, out: Path, tracker: str) -> None:
    """A run stopped in its second epoch (after steps of it were logged), then resumed to its end."""
    cut = cli(*RUN, "--max-steps", STEPS_PER_EPOCH + 6, "--out", out, "--log", tracker, "--json")
    assert json.loads(cut.stdout)["stopped_by"] == "max_steps", "--json's stdout stays JSON"
    cli("teacher", "train", "--resume", out, "--log", tracker, "--quiet")


def test_tensorboard_records_the_log_and_every_step_once_through_a_resume(cli, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    cut_then_resumed(cli, out, "tensorboard")
    assert load_checkpoint(out)["callbacks"] == {"tensorboard": {"log_dir": "tensorboard",
                                                                 "global_step": 2 * STEPS_PER_EPOCH}}
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    records = read_log(out / LOG)
    assert [r.epoch for r in records] == [1, 2] and not records[1].partial
    # Each epoch's numbers at the step that ends it; the cut run's partial epoch was purged by the resumed one.
    expected = [epoch_scalars(r) for r in records]
    assert set(events.Tags()["scalars"]) == {"step/loss", *expected[0]}
    for tag in expected[0]:
        logged = [(e.step, e.value) for e in events.Scalars(tag)]
        assert [step for step, _ in logged] == [r.global_step for r in records], tag
        assert all(math.isclose(value, scalars[tag], rel_tol=1e-6) for (_, value), scalars in zip(logged, expected))
    losses = events.Scalars("step/loss")
    assert [e.step for e in losses] == list(range(1, 2 * STEPS_PER_EPOCH + 1)), "every step once, none purged twice"
    for epoch, record in enumerate(records):  # the epoch's loss is the mean of its step losses
        steps = losses[epoch * STEPS_PER_EPOCH:(epoch + 1) * STEPS_PER_EPOCH]
        assert math.isclose(sum(e.value for e in steps) / len(steps), record.train_loss, rel_tol=1e-5)


@pytest.mark.e2e
def test_wandb_offline_writes_its_run_and_a_resume_goes_on_in_the_same_run(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-dir"))
    monkeypatch.setenv("WANDB_PROJECT", "rdist-tests")
    out = tmp_path / "run"
    cut = cli(*RUN, "--max-steps", STEPS_PER_EPOCH + 6, "--out", out, "--log", "wandb", "--json")
    assert json.loads(cut.stdout)["global_step"] == STEPS_PER_EPOCH + 6, "W&B's messages stay off stdout"
    run_id = load_checkpoint(out)["callbacks"]["wandb"]["id"]
    first = list((tmp_path / "wandb-dir" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(first) == 1

    cli("teacher", "train", "--resume", out, "--log", "wandb", "--quiet")
    assert load_checkpoint(out)["callbacks"]["wandb"] == {"id": run_id, "global_step": 2 * STEPS_PER_EPOCH}
    runs = sorted((tmp_path / "wandb-dir" / "wandb").glob("offline-run-*"))  # by start time (a second's runs: -1)
    assert len(runs) == 2 and all(re.fullmatch(rf"offline-run-\d{{8}}_\d{{6}}-{run_id}(-\d+)?", r.name) for r in runs), \
        "one W&B run, resumed by its id"
    # W&B writes each value as JSON text into the run's record file: each epoch's loss, exactly as log.jsonl has it,
    # is in the file of the process that trained that epoch, under rdist's keys.
    records = read_log(out / LOG)
    for run_dir, record in zip(runs, records):
        written = (run_dir / f"run-{run_id}.wandb").read_bytes()
        assert json.dumps(record.train_loss).encode() in written
        assert b"step/loss" in written and b"epoch/val_clean_acc" in written


@pytest.mark.parametrize("tracker", ["tensorboard", "wandb"])
def test_a_tracker_whose_package_is_missing_is_one_line_naming_the_extra(cli, tmp_path, monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # as if not installed: importlib finds no such module
    cli.fails([*RUN, "--out", tmp_path / "run", "--log", tracker],
              f"--log {tracker} needs the {tracker} package, which is not installed: pip install 'rdist[{tracker}]'")
    assert not (tmp_path / "run").exists()
    cli.fails([*RUN, "--out", tmp_path / "run", "--log", "mlflow"], "unknown --log tracker 'mlflow'",
              "tensorboard, wandb")
