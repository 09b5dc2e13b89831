"""Resume: a run killed with SIGKILL mid-epoch and resumed ends with exactly the weights of an uninterrupted run;
resuming anything that is not the same run is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rdist.engine import (CHECKPOINT, LAST, LOG, Callback, TrainConfig, load_checkpoint, read_log, resume_config,
                          train)
from rdist.artifact import read_metadata
from rdist.errors import RdistError
from rdist.files import hold_directory

ROOT = Path(__file__).resolve().parents[2]

# Trains `config` and SIGKILLs itself in the middle of step `kill_at`: nothing gets to clean up. A method a test file
# defines is registered first (the further arguments, module:Class).
KILLED_RUN = """
import importlib, json, os, signal, sys
import torch
torch.set_num_threads(1)
from rdist.engine import Callback, TrainConfig, train
from rdist.methods import register_method

config, kill_at = TrainConfig.from_dict(json.loads(sys.argv[1])), int(sys.argv[2])
for name in sys.argv[3:]:
    module, _, cls = name.partition(":")
    register_method(getattr(importlib.import_module(module), cls))

class Kill(Callback):
    report_every = 1  # hear of every step, so that the kill lands inside the epoch

    def on_step(self, info):
        if info.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

train(config, Kill())
"""


def killed_run(config: TrainConfig, kill_at: int, *methods: str) -> subprocess.CompletedProcess:
    """`config` trained in a process of its own that SIGKILLs itself in step `kill_at`; `methods` (module:Class) are
    registered there first."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(config.with_absolute_paths().to_dict()),
                           str(kill_at), *methods], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    state = load_checkpoint(run_dir)
    return {**{f"model.{k}": v for k, v in state["model"].items()},
            **{f"average.{k}": v for k, v in state["average"].items()}}


@pytest.mark.e2e
def test_killed_run_resumes_to_exactly_the_uninterrupted_weights(short_run, natural_teacher, tmp_path):
    # AKD2 with SWA: BN in train mode during the attack, random starts, two teachers and averaged weights.
    def config(out: Path) -> TrainConfig:
        return short_run(out, method="akd2", teachers={"natural": str(natural_teacher)}, epochs=3, swa_start=2)

    uninterrupted = train(config(tmp_path / "whole"))
    steps_per_epoch = uninterrupted.global_step // 3

    process = killed_run(config(tmp_path / "killed"), 2 * steps_per_epoch + 5)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 2

    resumed = train(resume_config(tmp_path / "killed"))

    assert resumed.global_step == uninterrupted.global_step and resumed.epochs_done == 3
    whole, after_kill = _weights(tmp_path / "whole"), _weights(tmp_path / "killed")
    assert whole.keys() == after_kill.keys()
    for key, value in whole.items():
        assert torch.equal(value, after_kill[key]), key
    last_whole, last_resumed = load_file(str(tmp_path / "whole" / LAST)), load_file(str(tmp_path / "killed" / LAST))
    assert all(torch.equal(v, last_resumed[k]) for k, v in last_whole.items())
    assert [r.epoch for r in read_log(tmp_path / "killed" / LOG)] == [1, 2, 3]


def test_resume_after_max_steps_drops_the_partial_epoch_from_the_log(short_run, tmp_path):
    train(short_run(tmp_path, epochs=2, max_steps=18 + 4))
    assert [(r.epoch, r.partial) for r in read_log(tmp_path / LOG)] == [(1, False), (2, True)]
    result = train(resume_config(tmp_path))
    assert [(r.epoch, r.partial) for r in read_log(tmp_path / LOG)] == [(1, False), (2, False)]
    assert result.global_step == 36 and result.stopped_by == "epochs"


def test_resume_refuses_a_directory_that_is_not_a_run(tmp_path):
    with pytest.raises(RdistError, match="not a run directory"):
        resume_config(tmp_path)
    with pytest.raises(RdistError, match="no such directory"):
        resume_config(tmp_path / "missing")
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(RdistError, match="unreadable"):
        resume_config(tmp_path)


def test_resume_refuses_a_run_of_another_method_or_config(short_run, tmp_path):
    train(short_run(tmp_path, epochs=2, max_steps=18))
    with pytest.raises(RdistError, match="it is a run of method rslad, not ard"):
        resume_config(tmp_path, method="ard")
    with pytest.raises(RdistError, match="it is a run of method rslad, not ard"):
        train(short_run(tmp_path, method="ard", method_args={}, resume=str(tmp_path)))
    with pytest.raises(RdistError, match=r"configuration differs: method.kl_scale 0.1 \(run\) vs 0.5 \(now\)"):
        train(resume_config(tmp_path, method_args={"kl_scale": 0.5}))
    with pytest.raises(RdistError, match=r"configuration differs: seed 0 \(run\) vs 3 \(now\)"):
        train(resume_config(tmp_path, seed=3))


def test_a_run_given_a_switch_resumes(short_run, tmp_path):
    """--hparam igdm_code_ard=true gives a bool: the checkpoint holds it as given and a resume accepts it."""
    given = {"igdm_code_ard": True, "alpha": 1.0, "tau": 1.0, "kl_scale": 1.0, "igdm_alpha": 5}
    train(short_run(tmp_path, method="ard+igdm", epochs=2, max_steps=18, method_args=given))  # stops after epoch 1
    assert load_checkpoint(tmp_path)["config"]["method_args"] == given
    result = train(resume_config(tmp_path))
    assert result.epochs_done == 2 and result.stopped_by == "epochs"
    assert read_metadata(tmp_path / LAST)["provenance"]["method_config"]["igdm_code_ard"] is True
    state = load_checkpoint(tmp_path)
    state["config"]["method_args"]["igdm_code_ard"] = "yes"  # what no option gives: still refused as altered
    torch.save(state, tmp_path / CHECKPOINT)
    with pytest.raises(RdistError, match=r"'config.method_args.igdm_code_ard' must be a number or an integer or "
                                         r"true or false, got 'yes'; the file was altered"):
        resume_config(tmp_path)


def test_a_new_run_does_not_overwrite_an_existing_one(short_run, tmp_path):
    train(short_run(tmp_path, epochs=1))
    before = load_checkpoint(tmp_path)
    with pytest.raises(RdistError, match="already holds a run.*--resume"):
        train(short_run(tmp_path, epochs=1, seed=1))  # another run given the same --out
    with pytest.raises(RdistError, match=rf"^{tmp_path} already holds a run of another configuration \(seed 0 \(run\) "
                                         rf"vs 1 \(now\)\); continue that run with --resume {tmp_path} alone \(it "
                                         r"keeps the run's own settings\), or pass another --out for this one$"):
        train(short_run(tmp_path, epochs=1, seed=1))
    # Why the message says "alone": --resume with the differing option too is refused, as a change to the run.
    with pytest.raises(RdistError, match="configuration differs: seed 0 .run. vs 1 .now.; resume with the run's own"):
        train(resume_config(tmp_path, seed=1))
    after = load_checkpoint(tmp_path)
    assert all(torch.equal(v, after["model"][k]) for k, v in before["model"].items()), "nothing was overwritten"


class Starts(Callback):
    """Records how each run starts: (start epoch, resumed)."""

    def __init__(self):
        self.starts = []

    def on_run_start(self, run_dir, start_epoch, epochs, steps_per_epoch, resumed) -> None:
        self.starts.append((start_epoch, resumed))


@pytest.mark.e2e
def test_the_same_run_started_again_continues_a_killed_run_to_the_uninterrupted_weights(short_run, tmp_path):
    """A cluster's requeue (or torchrun's restart) runs the same command again: with no --resume, a run directory
    holding a checkpoint of the same run is continued, exactly as --resume would, and a finished run returns."""
    uninterrupted = train(short_run(tmp_path / "whole", epochs=3))
    steps_per_epoch = uninterrupted.global_step // 3
    config = short_run(tmp_path / "killed", epochs=3).with_absolute_paths()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.run([sys.executable, "-c", KILLED_RUN, json.dumps(config.to_dict()),
                              str(steps_per_epoch + 2)], env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    assert load_checkpoint(tmp_path / "killed")["epoch"] == 1

    starts = Starts()
    again = train(config, starts)  # the very same config: no resume given
    assert starts.starts == [(2, True)]
    assert again.epochs_done == 3 and again.global_step == uninterrupted.global_step
    whole, continued = load_checkpoint(tmp_path / "whole")["model"], load_checkpoint(tmp_path / "killed")["model"]
    assert all(torch.equal(v, continued[k]) for k, v in whole.items())
    assert [r.epoch for r in read_log(tmp_path / "killed" / LOG)] == [1, 2, 3]

    finished = train(config, starts)
    assert starts.starts[-1] == (4, True) and finished.global_step == again.global_step, "nothing more to train"


def test_a_paper_run_stores_its_resolved_attack(tmp_path):
    """Checkpoints hold concrete eps/step values: a TRADES --recipe paper run stores and resumes at the 0.031 and
    0.007 its recipe resolved to."""
    config = TrainConfig(method="trades", student="tinycnn", data="digits", recipe="paper", epochs=2, batch_size=64,
                         attack_steps=2, eval_n=32, max_steps=18, out=str(tmp_path))  # stops after epoch 1
    train(config)
    state = load_checkpoint(tmp_path)
    assert (state["config"]["eps"], state["config"]["step_size"], state["config"]["attack_steps"]) == (0.031, 0.007, 2)
    assert read_metadata(tmp_path / LAST)["provenance"]["eps"] == 0.031
    assert resume_config(tmp_path).eps == 0.031


def test_a_requeued_run_is_refused_while_the_first_still_holds_its_directory(short_run, tmp_path):
    """The directory's lock is taken before its checkpoint is read: a requeued job that starts while the old one
    still runs is refused at once, not interleaved with it; once the old one is gone, it continues."""
    train(short_run(tmp_path, epochs=2, max_steps=18))  # one epoch, then cut: its checkpoint holds epoch 1
    before = (tmp_path / CHECKPOINT).read_bytes()
    with hold_directory(tmp_path, "wait for it or pass another --out"):  # the old job, still alive
        with pytest.raises(RdistError, match=rf"^{tmp_path} is being written by process {os.getpid()} on host .*; "
                                             "wait for it or pass another --out$"):
            train(short_run(tmp_path, epochs=2))
    assert (tmp_path / CHECKPOINT).read_bytes() == before, "nothing read into, nothing written"
    result = train(short_run(tmp_path, epochs=2))
    assert result.epochs_done == 2 and [r.epoch for r in read_log(tmp_path / LOG)] == [1, 2]
