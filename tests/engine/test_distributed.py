"""Training under `torchrun --nproc-per-node 2` (gloo, CPU) computes what one process computes with the same global
batch, every rank ends with the same weights, a job that loses a rank resumes on one process, and one that torchrun
restarts (`--max-restarts`) continues by itself."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rdist.attacks.pgd import ShardNoise, random_start
from rdist.data.loader import shard_rows
from rdist.engine import LOG, TrainConfig, load_checkpoint, read_log, resume_config, train
from rdist.attacks.evaluator import eval_shard
from rdist.engine.ddp import DataParallelTraining
from rdist.errors import RdistError
from rdist.files import LOCK_FILE, hold_directory
from rdist.methods import register_method, registry
from rdist.parallel import Group, Ranks
from tests.methods.test_new_companion import Tutor

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = Path(sys.executable).with_name("torchrun")

# What every rank runs, in one torchrun job (a job's start-up costs seconds): train each config in turn, as --seeds
# does, in the one process group the first run starts, and save this rank's final student weights as
# <out>/rank<R>.pt, its companions' weights and the method's state as <out>/extra<R>.pt. In config `nan_run` rank 1's
# loss turns NaN at its second step (every rank must stop there; each writes its error to <out>/error<R>.txt and goes
# on to the next config); in the last config's step `kill_at` (0: never), rank 1 SIGKILLs itself. The test method
# Tutor (a companion, state, step.batch statistics) is registered as its test file registers it.
RANK_RUN = """
import json, os, signal, sys
from pathlib import Path
import torch
torch.set_num_threads(1)
from rdist.engine import Callback, TrainConfig
from rdist.engine.build import build_run
from rdist.engine.trainer import Trainer, resume_advice
from rdist.errors import RdistError
from rdist.files import LOCK_FILE, hold_directory
from rdist.methods import register_method
from tests.methods.test_new_companion import Tutor

register_method(Tutor)

configs, kill_at, nan_run = [TrainConfig.from_dict(c) for c in json.loads(sys.argv[1])], int(sys.argv[2]), \
    int(sys.argv[3])
rank = int(os.environ["RANK"])

class Kill(Callback):
    report_every = 1  # hear of every step, so that the kill lands inside the epoch

    def __init__(self, at):
        self.at = at

    def on_step(self, info):
        if rank == 1 and info.global_step == self.at:
            os.kill(os.getpid(), signal.SIGKILL)

def poisoned(loss):
    calls = [0]
    def nan_at_the_second_step(*args):
        calls[0] += 1
        return loss(*args) * (float("nan") if calls[0] == 2 else 1.0)
    return nan_at_the_second_step

for i, config in enumerate(configs):
    run = build_run(config)
    if i == nan_run and rank == 1:
        run.method.loss = poisoned(run.method.loss)
    try:
        with run.parallel.group.session(resume_advice(run.run_dir)):
            Trainer(run, Kill(kill_at if i == len(configs) - 1 else 0)).fit()
    except RdistError as exc:
        if i != nan_run:
            raise
        Path(config.out, f"error{rank}.txt").write_text(str(exc))
        continue
    torch.save(run.student.state_dict(), f"{config.out}/rank{rank}.pt")
    torch.save({"companions": {role: m.state_dict() for role, m in run.companions.items()},
                "state": run.method.state_dict()}, f"{config.out}/extra{rank}.pt")
"""
STEPS_PER_EPOCH = 3  # 189 training images at batch 64: 64 + 64 + 61
# The runs trained on two ranks and on one process: name -> (method, its hyper-parameters). DGAD's default loss is a
# mean over the examples (each KL divided by the batch size, PCR an element mean), which the ranks' gradient shares
# make the global batch's: it needs no batch statistic, its last batch (30/31 rows) included. SAAD normalises by the
# global batch's entropy minimum and maximum (step.batch.gather), DGAD with the official bs counts the global batch's
# teacher mistakes (step.batch.sum), its official MobileNetV2 loss is a product of global batch means, and Tutor trains
# a companion and keeps state from step.batch's means.
DISTRIBUTED_RUNS = {"rslad": ("rslad", {}), "natural": ("natural", {}), "dgad": ("dgad", {}), "saad": ("saad", {}),
                    "dgad-code-bs": ("dgad", {"dgad_code_bs": 128}),
                    "dgad-code-mnv2": ("dgad", {"dgad_code_mnv2_loss": True, "kl_scale": 0.5}),
                    "tutor": ("tutor", {})}
# B-MTARD keeps state (loss weights, temperatures, first losses) from step.batch's means of its losses and entropies;
# its temperatures move faster than the paper's 0.001 so that two epochs move them.
DISTRIBUTED_RUNS |= {"bmtard": ("bmtard", {"temp_lr": 0.01})}
STATEFUL_RUNS = {"tutor", "bmtard"}  # the runs whose method keeps state
# PeerAiD: a peer trained beside the student under DDP and SyncBatchNorm, whose loss reaches the student through its
# undetached target S(xa): one backward through both networks, then both optimisers.
DISTRIBUTED_RUNS["peeraid"] = ("peeraid", {})
# Seeds other than 0. Seed 0 puts one ReLU input of PeerAiD's peer at step 1 (features.2, row 17, channel 39) at
# -6e-7, inside the forward's floating-point noise (rms 7e-7 there, on two ranks as on two threads): the two ranks
# land on its other side, the two-thread run does not, and that one kink of the peer's gradient (1.5e-3 of it at step
# 1) ends as a 3e-5 gap, 700 times the floor it failed to sample. Seeds 1 and 3 put no input that near a kink.
RUN_SEEDS = {"peeraid": 1}
COMPANION_RUNS = {"tutor", "peeraid"}  # the runs whose method trains a companion


def torchrun(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def train_on_two_ranks(configs: list[TrainConfig], script: Path, kill_at: int = 0,
                       nan_run: int = -1) -> subprocess.CompletedProcess:
    script.write_text(RANK_RUN)
    return torchrun(str(script), json.dumps([c.with_absolute_paths().to_dict() for c in configs]), str(kill_at),
                    str(nan_run))


def relative_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """|a - b| / |a| over all floating-point tensors (weights and BN statistics) flattened together."""
    keys = [k for k, v in a.items() if v.is_floating_point()]
    flat_a, flat_b = (torch.cat([d[k].double().flatten() for k in keys]) for d in (a, b))
    return ((flat_a - flat_b).norm() / flat_a.norm()).item()


def _part(saved: dict, part: str) -> dict[str, torch.Tensor]:
    """"state" or "companions.<role>" of what a rank saved as extra<R>.pt."""
    kind, _, role = part.partition(".")
    return saved[kind][role] if role else saved[kind]


def digits_config(natural_teacher: Path, out: Path, method: str, **overrides) -> TrainConfig:
    """A two-epoch digits run of a tinycnn student. val_size leaves an odd 189 training images: each epoch ends
    with a batch of 61 that splits 30/31, which the ranks' gradient shares must weight."""
    values = dict(method=method, student="tinycnn", data="digits", epochs=2, batch_size=64, lr=0.05,
                  attack_steps=2, eval_n=64, val_size=0.8686, sync_bn=True, out=str(out))
    if method in ("rslad", "dgad", "saad"):
        values["teachers"] = {"robust": str(natural_teacher)}
    if method == "bmtard":  # one model in both roles: it sees xa as the robust teacher, x as the natural one
        values["teachers"] = {"robust": str(natural_teacher), "natural": str(natural_teacher)}
    return TrainConfig(**{**values, **overrides})


# The run the restart test kills and torchrun restarts, as `rdist teacher train` options and as the TrainConfig they
# make. Its evaluation of 1000 images every epoch gives the test a second or more between the first epoch's checkpoint
# and the end of the run to kill it in.
REQUEUED = dict(epochs=4, eval_n=1000)
REQUEUED_OPTIONS = ["--method", "natural", "--arch", "tinycnn", "--data", "digits", "--epochs", "4", "--batch-size",
                    "64", "--lr", "0.05", "--steps", "2", "--eval-n", "1000", "--val-size", "0.8686", "--sync-bn"]


def extra_config(natural_teacher: Path, generated_digits: dict[str, Path], out: Path, **overrides) -> TrainConfig:
    """RSLAD on batches of 64 with 45 generated digits (DeepMind's layout) and an EMA of the weights: 10 steps an
    epoch, the last with 18 real images (filled up to 64, it splits 32/32)."""
    return digits_config(natural_teacher, out, "rslad", extra_data=str(generated_digits["deepmind"]),
                         extra_fraction=0.7, ema=0.9, **overrides)


@pytest.fixture(scope="module")
def runs(natural_teacher, generated_digits, tmp_path_factory) -> Path:
    """One torchrun job of the runs above, no-sync-bn, nan-on-rank-1 (one epoch), requeue-whole (what the restart
    test's job trains, uninterrupted), two/extra (generated data and EMA) and killed (Tutor, rank 1 killed in epoch
    2), and the one-process runs they are compared with, all under one directory: two/<run> (sync BN), one/<run> and
    one/extra (one process, one thread) and one-two-threads/extra (the same run on two threads: the floating-point
    floor)."""
    root = tmp_path_factory.mktemp("distributed")
    jobs = [digits_config(natural_teacher, root / "two" / name, method, method_args=args,
                          seed=RUN_SEEDS.get(name, 0))
            for name, (method, args) in DISTRIBUTED_RUNS.items()]
    jobs.append(digits_config(natural_teacher, root / "no-sync-bn", "natural", sync_bn=False))
    jobs.append(digits_config(natural_teacher, root / "nan-on-rank-1", "natural", epochs=1))
    jobs.append(digits_config(natural_teacher, root / "requeue-whole", "natural", **REQUEUED))
    jobs.append(extra_config(natural_teacher, generated_digits, root / "two" / "extra"))
    jobs.append(digits_config(natural_teacher, root / "killed", "tutor"))
    process = train_on_two_ranks(jobs, root / "rank_run.py", kill_at=STEPS_PER_EPOCH + 2,
                                 nan_run=len(DISTRIBUTED_RUNS) + 1)
    (root / "job.stderr").write_text(process.stderr)
    (root / "job.returncode").write_text(str(process.returncode))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(registry, "METHODS", dict(registry.METHODS))
        register_method(Tutor)
        for name, (method, args) in DISTRIBUTED_RUNS.items():  # one process: BN sees the global batch
            train(digits_config(natural_teacher, root / "one" / name, method, method_args=args, sync_bn=False,
                                seed=RUN_SEEDS.get(name, 0)))
        train(extra_config(natural_teacher, generated_digits, root / "one" / "extra", sync_bn=False))
        # The floating-point floor: the same runs in one process on two threads (another order of float additions).
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            for name, (method, args) in DISTRIBUTED_RUNS.items():
                train(digits_config(natural_teacher, root / "one-two-threads" / name, method, method_args=args,
                                    sync_bn=False, seed=RUN_SEEDS.get(name, 0)))
            train(extra_config(natural_teacher, generated_digits, root / "one-two-threads" / "extra", sync_bn=False))
        finally:
            torch.set_num_threads(threads)
    return root


def within_the_floor(one: dict[str, torch.Tensor], two: dict[str, torch.Tensor], threads: dict[str, torch.Tensor],
                     what: str, run_floor: float = 0.0) -> float:
    """Two ranks' `two` is one process's `one` up to the floating-point floor: at most 10 times the gap between one
    process on one thread and on two (`threads`), which must not be zero (else it measures nothing). `run_floor`,
    the student's floor, stands for parts whose own gap is zero: a method's few state scalars, derived from loss
    means whose reductions a second thread does not reorder. Returns the floor used."""
    floor, gap = max(relative_difference(one, threads), run_floor), relative_difference(one, two)
    print(f"{what}: two threads {floor:.2e}, two ranks {gap:.2e}")
    assert 0 < floor and gap <= 10 * floor, (what, gap, floor)
    return floor


def job_stderr(runs: Path) -> str:
    return (runs / "job.stderr").read_text()


@pytest.mark.e2e
@pytest.mark.parametrize("name", DISTRIBUTED_RUNS)
def test_two_ranks_with_sync_bn_train_what_one_process_trains(runs, name):
    one_dir, two_dir = runs / "one" / name, runs / "two" / name
    assert (two_dir / "rank1.pt").is_file(), job_stderr(runs)[-3000:]  # absent if the job failed before the kill
    ranks = [torch.load(two_dir / f"rank{r}.pt") for r in range(2)]
    assert all(torch.equal(v, ranks[1][k]) for k, v in ranks[0].items())  # one model, not two
    one_state, two_state = load_checkpoint(one_dir), load_checkpoint(two_dir)
    threads_state = load_checkpoint(runs / "one-two-threads" / name)
    floor = within_the_floor(one_state["model"], two_state["model"], threads_state["model"], f"{name} student")
    assert all(torch.equal(v, two_state["model"][k]) for k, v in ranks[0].items())  # rank 0's is the checkpoint's
    # Companions and state: equal on every rank, and what one process trains.
    extra = [torch.load(two_dir / f"extra{r}.pt") for r in range(2)]
    for part in ("state", *(f"companions.{role}" for role in extra[0]["companions"])):
        mine, theirs = (_part(e, part) for e in extra)
        assert all(torch.equal(v, theirs[k]) for k, v in mine.items()), part
    for role in one_state["companions"]:
        within_the_floor(*(s["companions"][role]["model"] for s in (one_state, two_state, threads_state)),
                         f"{name} {role}")
    if one_state["method_state"]:
        within_the_floor(one_state["method_state"], two_state["method_state"], threads_state["method_state"],
                         f"{name} state", run_floor=floor)
    assert (name in COMPANION_RUNS) == bool(one_state["companions"])
    assert (name in STATEFUL_RUNS) == bool(one_state["method_state"])
    log_one, log_two = read_log(one_dir / LOG), read_log(two_dir / LOG)
    assert [r.best_epoch for r in log_two] == [r.best_epoch for r in log_one] and log_one[-1].best_epoch
    assert [r.global_step for r in log_two] == [r.global_step for r in log_one] == [3, 6]
    for a, b in zip(log_one, log_two):  # the evaluation is sharded and gathered: the same per-image attacks
        assert abs(a.clean_acc - b.clean_acc) <= 1 / 64
        assert abs(a.train_loss - b.train_loss) < 1e-3 * a.train_loss


@pytest.mark.e2e
def test_two_ranks_with_extra_data_and_an_ema_train_what_one_process_trains_within_the_floating_point_floor(runs):
    """Each rank takes its rows of the same global batch from both streams (real and generated): the weights and their
    average end where one process's do, to within the floor, the gap between one process on one and on two
    threads (the same computation in another order of float additions)."""
    two_dir = runs / "two" / "extra"
    assert (two_dir / "rank1.pt").is_file(), job_stderr(runs)[-3000:]
    ranks = [torch.load(two_dir / f"rank{r}.pt") for r in range(2)]
    assert all(torch.equal(v, ranks[1][k]) for k, v in ranks[0].items())
    one, two, threads = (load_checkpoint(d) for d in (runs / "one" / "extra", two_dir, runs / "one-two-threads" /
                                                      "extra"))
    assert one["global_step"] == two["global_step"] == 2 * 10
    for part in ("model", "average"):
        within_the_floor(one[part], two[part], threads[part], f"extra {part}")
    assert two["identity"]["extra_data"] == one["identity"]["extra_data"]


@pytest.mark.e2e
def test_without_sync_bn_every_rank_keeps_rank_0s_running_statistics(runs):
    # Each rank's BN normalises with its own shard, so their running statistics would drift apart; they are
    # broadcast from rank 0 after every step, so that all ranks attack and evaluate one model.
    assert (runs / "no-sync-bn" / "rank1.pt").is_file(), job_stderr(runs)[-3000:]
    ranks = [torch.load(runs / "no-sync-bn" / f"rank{r}.pt") for r in range(2)]
    assert all(torch.equal(v, ranks[1][k]) for k, v in ranks[0].items())
    assert int(ranks[0]["features.0.1.num_batches_tracked"]) == 2 * STEPS_PER_EPOCH


@pytest.mark.e2e
def test_a_loss_that_goes_non_finite_on_one_rank_stops_every_rank_at_that_step(runs):
    # Rank 0's own loss at step 2 is finite; had it gone on, it would have waited forever in step 3's gradient
    # all-reduce for rank 1. The job went on to its next run, so the ranks left this one in step.
    errors = [runs / "nan-on-rank-1" / f"error{r}.txt" for r in range(2)]
    assert all(e.is_file() for e in errors), job_stderr(runs)[-3000:]
    assert all("training loss is nan at step 2 (epoch 1, batch 2 of 3)" in e.read_text() for e in errors)
    assert not (runs / "nan-on-rank-1" / "checkpoint.pt").exists()


@pytest.mark.e2e
def test_a_killed_rank_ends_the_job_and_the_run_resumes_on_one_process(runs):
    killed = runs / "killed"
    assert int((runs / "job.returncode").read_text()) != 0
    assert f"continue with --resume {killed}" in job_stderr(runs), job_stderr(runs)[-3000:]
    assert not (killed / "rank0.pt").exists() and load_checkpoint(killed)["epoch"] == 1

    with pytest.MonkeyPatch.context() as patch:  # Tutor (a companion and state), registered as its test file does
        patch.setattr(registry, "METHODS", dict(registry.METHODS))
        register_method(Tutor)
        resumed = train(resume_config(killed, sync_bn=False))
    uninterrupted = read_log(runs / "one" / "tutor" / LOG)[-1]  # the same run in one process
    assert resumed.epochs_done == 2 and resumed.global_step == uninterrupted.global_step == 2 * STEPS_PER_EPOCH
    assert [r.epoch for r in read_log(killed / LOG)] == [1, 2]
    one, after_kill = load_checkpoint(runs / "one" / "tutor"), load_checkpoint(killed)
    assert relative_difference(one["model"], after_kill["model"]) < 1e-4
    assert relative_difference(one["companions"]["peer"]["model"], after_kill["companions"]["peer"]["model"]) < 1e-4
    assert relative_difference(one["method_state"], after_kill["method_state"]) < 1e-4


@pytest.mark.e2e
def test_torchrun_restarts_a_killed_worker_and_the_same_command_continues_to_the_uninterrupted_weights(runs, tmp_path):
    """`torchrun --max-restarts 1` reruns the command of a job whose worker died; the run directory holds the
    checkpoint of the same run, so the command continues it (one line says so) instead of refusing it, and ends with
    the weights of the run trained without interruption (the module's job trained it), bit for bit. The kill comes
    from outside, as a node's failure would: rank 0, found by the lock it holds, once the first epoch's checkpoint
    is on disk."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "--max-restarts", "1", "-m",
                                "rdist", "teacher", "train", *REQUEUED_OPTIONS, "--out", str(out), "--quiet"],
                               env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "checkpoint.pt").exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.005)
        holder = json.loads((out / LOCK_FILE).read_text())["pid"]  # rank 0: it holds the run directory
        os.kill(holder, signal.SIGKILL)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:]
    continued = re.findall(rf"^continuing the run in {re.escape(str(out))} from epoch (\d+) \(same configuration\)$",
                           stderr, re.M)
    assert len(continued) == 1 and 2 <= int(continued[0]) <= REQUEUED["epochs"], stderr[-3000:]
    assert "finished: 4 epochs" in stdout
    whole = runs / "requeue-whole"
    assert [r.epoch for r in read_log(out / LOG)] == [1, 2, 3, 4]
    assert [(r.global_step, r.clean_acc, r.train_loss) for r in read_log(out / LOG)] == \
        [(r.global_step, r.clean_acc, r.train_loss) for r in read_log(whole / LOG)]
    restarted, uninterrupted = load_checkpoint(out)["model"], load_checkpoint(whole)["model"]
    assert restarted.keys() == uninterrupted.keys()
    assert all(torch.equal(v, uninterrupted[k]) for k, v in restarted.items())


@pytest.mark.e2e
def test_attack_under_torchrun_reports_what_one_process_reports(digits_artifact, tmp_path):
    from rdist.report.config import EvalConfig
    from rdist.report.robustness import robustness_report

    one = robustness_report(str(digits_artifact), EvalConfig(attacks="clean,pgd20", n=150, batch_size=40,
                                                             device="cpu")).to_dict()
    process = torchrun("-m", "rdist", "attack", str(digits_artifact), "--attacks", "clean,pgd20", "--n-images", "150",
                       "--batch-size", "40", "--out", str(tmp_path / "two.json"), "--quiet")
    assert process.returncode == 0, process.stderr[-3000:]
    assert process.stdout.count("worst class:") == 1  # rank 0 prints the report, rank 1 nothing
    two = json.loads((tmp_path / "two.json").read_text())
    # Each rank attacked whole batches with the seeds one process gives them: the same per-image results.
    assert two["accuracy"] == one["accuracy"] and two["worst_case"] == one["worst_case"]
    assert two["n"] == 150 and two["processes"] == 2


@pytest.mark.e2e
def test_seeds_under_torchrun_train_one_run_after_the_other_in_one_process_group(tmp_path):
    process = torchrun("-m", "rdist", "teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data",
                       "digits", "--epochs", "1", "--max-steps", "2", "--batch-size", "64", "--eval-n", "16",
                       "--seeds", "0,1", "--out", str(tmp_path / "group"), "--quiet", timeout=180)
    assert process.returncode == 0, process.stderr[-3000:]
    assert all((tmp_path / "group" / f"seed-{seed}" / "last.safetensors").is_file() for seed in (0, 1))


@pytest.mark.e2e
def test_torchrun_refuses_a_batch_that_does_not_split_over_the_processes(tmp_path):
    process = torchrun("-m", "rdist", "teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data",
                       "digits", "--epochs", "1", "--batch-size", "63", "--out", str(tmp_path / "run"), timeout=120)
    assert process.returncode != 0
    # One line per rank that got to print it before torchrun stopped the job on the first failure.
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert 1 <= len(errors) <= 2 and all("--batch-size 63 (the global batch) does not divide by the 2 processes" in e
                          and "e.g. 62 or 64" in e for e in errors), process.stderr[-3000:]
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.e2e
def test_torchrun_is_refused_a_run_directory_another_process_holds(tmp_path):
    """Rank 0 alone tries the run directory's lock and every rank hears its verdict: the whole job stops at once, with
    the one line naming the holder (here this test's process), having written nothing."""
    out = tmp_path / "run"
    with hold_directory(out, "wait for it or pass another --out"):
        process = torchrun("-m", "rdist", "teacher", "train", "--method", "natural", "--arch", "tinycnn", "--data",
                           "digits", "--epochs", "1", "--batch-size", "64", "--out", str(out), timeout=180)
        assert process.returncode != 0
        refusal = (f"{out} is being written by process {os.getpid()} on host {socket.gethostname()}; wait for it or "
                   "pass another --out")
        errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
        assert errors in ([f"error: {refusal}"], [f"error: {refusal}", f"error: rank 1: {refusal}"],
                          [f"error: rank 1: {refusal}", f"error: {refusal}"]), process.stderr[-3000:]
        assert [p.name for p in out.iterdir()] == [LOCK_FILE]


def test_each_rank_draws_the_global_batch_noise_and_keeps_its_rows():
    x = torch.rand(7, 1, 8, 8, dtype=torch.float64)
    for start in ("uniform", "normal"):
        whole = random_start(x, 0.1, start, torch.Generator().manual_seed(3))
        rows = [shard_rows(7, rank, 2) for rank in range(2)]
        shards = [random_start(x[r], 0.1, start, ShardNoise(torch.Generator().manual_seed(3), r.start, r.stop, 7))
                  for r in rows]
        assert torch.equal(torch.cat(shards), whole)


def test_shards_of_batches_and_of_the_evaluation_set_cover_everything_once():
    for world in (2, 3, 8):
        assert torch.equal(torch.cat([torch.arange(61)[shard_rows(61, r, world)] for r in range(world)]),
                           torch.arange(61))
        rows = [eval_shard(150, 40, Ranks(r, world)) for r in range(world)]
        assert [i for r in rows for i in range(r.start, r.stop)] == list(range(150))
        assert all(r.start % 40 == 0 for r in rows)  # whole batches: the seeds of one process


def test_bad_distributed_settings_are_refused(monkeypatch):
    parallel = DataParallelTraining(Group(Ranks(0, 2), torch.device("cpu"), "gloo"))
    with pytest.raises(RdistError, match=r"--batch-size 63 \(the global batch\) does not divide by the 2 .* 62 or 64"):
        parallel.check_batch(63, 1000)
    with pytest.raises(RdistError, match="ends with a batch of 1 image"):
        parallel.check_batch(64, 64 * 10 + 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RdistError, match="nccl runs on CUDA GPUs only.*--dist-backend gloo"):
        Group.start("cpu", "nccl")
    with pytest.raises(RdistError, match="--dist-backend must be one of nccl, gloo"):
        Group.start("cpu", "mpi")
    monkeypatch.setenv("RANK", "2")
    with pytest.raises(RdistError, match="RANK=2 is not a rank of WORLD_SIZE=2"):
        Group.start("cpu")


def test_sync_bn_in_one_process_says_it_has_no_effect():
    with pytest.warns(UserWarning, match="--sync-bn has no effect in a single process"):
        parallel = DataParallelTraining.start("cpu", sync_bn=True)
    assert not parallel.distributed


def test_every_collective_is_the_identity_in_one_process():
    # What training, evaluation and a method's batch-global statistics call unconditionally: one process
    # exchanges nothing and gets its own values back, unchanged.
    from rdist import parallel

    x = torch.arange(6.0).view(3, 2).requires_grad_()
    assert parallel.sum_over_ranks(x) is x and parallel.gather_rows(x) is x and parallel.broadcast_from_main(x) is x
    assert parallel.mean_over_ranks([1.5, 2.0]) == [1.5, 2.0] and parallel.total_over_ranks([3.0]) == [3.0]
    assert parallel.min_over_ranks(7) == 7 and parallel.gather_objects({"a": [1]}) == [{"a": [1]}]
    group = Group(Ranks(), torch.device("cpu"))
    assert group.share({"refusal": None}) == {"refusal": None} and not parallel.distributed()
    with group.main_first(), group.session("advice"):
        group.check_same(config={"seed": 0})
