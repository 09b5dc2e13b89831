"""A run directory is written by one process at a time and keeps nothing of a killed write: two `rdist` runs on one
--out (one trains, the other is refused in one line naming the first), a kill -9 that frees the directory for
--resume, a kill inside a checkpoint write whose temporary file the resume sweeps, and the files' modes."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rdist.engine import CHECKPOINT, LOG, load_checkpoint, read_log, resume_config, train, train_seeds
from rdist.errors import RdistError
from rdist.files import LOCK_FILE, hold_directory

ROOT = Path(__file__).resolve().parents[2]
RDIST = Path(sys.executable).with_name("rdist")
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
# Epochs of 18 steps, a fifth of a second each on a CPU: 200 outlast what the test does before it kills the run.
TRAIN = ["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--batch-size", "64",
         "--eval-n", "16", "--quiet"]
STEPS_PER_EPOCH = 18


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(run_dir: Path) -> list[str]:
    """Hidden entries of a run directory: temporary files of atomic writes, the lock file."""
    return sorted(p.name for p in run_dir.glob(".*"))


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.e2e
def test_two_runs_on_one_out_one_trains_and_a_kill_frees_the_directory_for_resume(tmp_path):
    out = tmp_path / "run"
    command = [str(RDIST), *TRAIN, "--epochs", "200", "--out", str(out)]
    runs = [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    try:
        _wait_for(lambda: any(r.poll() is not None for r in runs), 240, "one of the two runs to end")
        (refused,) = [r for r in runs if r.poll() is not None]
        (holder,) = [r for r in runs if r is not refused]
        stdout, stderr = refused.communicate()
        assert refused.returncode == 1 and stdout == "", stderr
        assert stderr.splitlines() == [f"error: {out} is being written by process {holder.pid} on host "
                                       f"{socket.gethostname()}; wait for it or pass another --out"]
        assert json.loads((out / LOCK_FILE).read_text()) == {"pid": holder.pid, "host": socket.gethostname()}

        _wait_for(lambda: (out / CHECKPOINT).is_file(), 240, "the first epoch's checkpoint")
        assert holder.poll() is None, "the holder trains on"
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    assert (out / LOCK_FILE).is_file(), "the killed holder's lock file stays, unlocked"

    epoch = load_checkpoint(out)["epoch"]
    resumed = subprocess.run([str(RDIST), "teacher", "train", "--resume", str(out), "--max-steps",
                              str((epoch + 1) * STEPS_PER_EPOCH), "--quiet"],
                             env=ENV, capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out)["epoch"] == epoch + 1
    assert [r.epoch for r in read_log(out / LOG)] == list(range(1, epoch + 2)), "one writer: no epoch twice"
    assert _leftovers(out) == [], "no lock file after a clean exit, no temporary file of the killed writes"


def test_seeds_hold_each_run_directory_they_train(short_run, tmp_path):
    group = tmp_path / "group"
    with hold_directory(group / "seed-1", "wait for it"):
        with pytest.raises(RdistError, match=f"seed-1 is being written by process {os.getpid()} on host"):
            train_seeds(short_run(group, epochs=1, max_steps=2), [0, 1])
    assert (group / "seed-0" / "last.safetensors").is_file() and _leftovers(group / "seed-0") == []
    assert not (group / "seed-1" / LOG).exists()


# Trains `config`; the second checkpoint write is killed (SIGKILL) halfway: its temporary file is on disk.
KILLED_IN_CHECKPOINT_WRITE = """
import json, os, signal, sys
import torch
torch.set_num_threads(1)
from rdist.engine import TrainConfig, train

saves = []

def killed_on_the_second(obj, f, *args, **kwargs):
    saves.append(f)
    if len(saves) == 2:
        with open(f, "wb") as half:
            half.write(b"half a checkpoint")
            half.flush()
            os.fsync(half.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return save(obj, f, *args, **kwargs)

save, torch.save = torch.save, killed_on_the_second
train(TrainConfig.from_dict(json.loads(sys.argv[1])))
"""


@pytest.mark.e2e
def test_a_run_killed_inside_a_checkpoint_write_resumes_to_the_end_with_no_temporary_file(short_run, tmp_path):
    out = tmp_path / "run"
    config = short_run(out, epochs=3).with_absolute_paths()
    process = subprocess.run([sys.executable, "-c", KILLED_IN_CHECKPOINT_WRITE, json.dumps(config.to_dict())],
                             env=ENV, capture_output=True, text=True, timeout=300)
    assert process.returncode == -signal.SIGKILL, process.stderr
    (residue,) = [name for name in _leftovers(out) if name.startswith(f".{CHECKPOINT}.")]
    assert residue.endswith(".tmp") and (out / residue / CHECKPOINT).read_bytes() == b"half a checkpoint"
    assert load_checkpoint(out)["epoch"] == 1, "the old checkpoint is intact"
    (out / ".my-notes.tmp").write_text("not rdist's")

    result = train(resume_config(out))
    assert result.epochs_done == 3 and [r.epoch for r in read_log(out / LOG)] == [1, 2, 3]
    assert _leftovers(out) == [".my-notes.tmp"], "the sweep deletes rdist's temporary files only"


# Under umask 0022: a training run, an `rdist attack --out` report and a plot.
WRITE_UNDER_UMASK = """
import sys
import torch
torch.set_num_threads(1)
from matplotlib.figure import Figure
from rdist.cli.app import app
from rdist.report.plots import save_png

out = sys.argv[1]
for args in (["teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data", "digits", "--epochs", "1",
              "--batch-size", "64", "--eval-n", "16", "--out", f"{out}/run", "--quiet"],
             ["attack", f"{out}/run/best.safetensors", "--attacks", "clean", "--n", "20", "--quiet",
              "--out", f"{out}/report.json"]):
    app(args, standalone_mode=False)
save_png(Figure(figsize=(1, 1)), f"{out}/figure.png")
"""


@pytest.mark.e2e
def test_new_artifacts_follow_the_umask_and_record_keeps_a_files_mode(cli, tmp_path):
    subprocess.run([sys.executable, "-c", WRITE_UNDER_UMASK, str(tmp_path)], env=ENV, umask=0o022, check=True,
                   capture_output=True, timeout=300)
    run = tmp_path / "run"
    written = [run / name for name in ("best.safetensors", "last.safetensors", CHECKPOINT, LOG)]
    written += [tmp_path / "report.json", tmp_path / "figure.png"]
    assert {str(p.relative_to(tmp_path)): oct(_mode(p)) for p in written} == \
        {str(p.relative_to(tmp_path)): oct(0o644) for p in written}
    assert _mode(run) == 0o755

    model = run / "best.safetensors"
    for mode in (0o644, 0o640):
        model.chmod(mode)
        cli("attack", model, "--attacks", "clean", "--n", "10", "--quiet", "--record")
        assert _mode(model) == mode
