"""The training loop: epochs of (attack, update) steps, evaluation, artifacts, log and checkpoint.

Exact resume: the data order and augmentation of epoch e depend only on (seed, e) (`Batches`), the
attack's random starts come from a generator seeded from (seed, e) at the start of every epoch, and the
checkpoint written at the end of an epoch holds all other state. A run resumed at an epoch boundary
therefore repeats, on the CPU, exactly the computation of an uninterrupted run. Under torchrun the same
holds for any number of processes (`engine.ddp`): the checkpoint does not depend on it.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from rdist.artifact import load_weights
from rdist.attacks import evaluate
from rdist.device import cudnn_autotune, input_layout
from rdist.engine.averaging import weight_average
from rdist.engine.build import Run, build_run
from rdist.engine.callbacks import Callback, Callbacks, StepInfo
from rdist.engine.checkpoint import check_same_run, load_checkpoint, restore_rng, rng_state, save_checkpoint
from rdist.engine.companions import Companions
from rdist.engine.config import TrainConfig
from rdist.engine.config_file import write_config_file
from rdist.engine.log import EpochLog
from rdist.engine.rundir import EVAL_ATTACKS, check_run_dir, eval_report, hold_run_dir, save_artifact, save_companion
from rdist.engine.schedule import build_optimizer
from rdist.engine.step import attack_phase, update_phase
from rdist.engine.totals import EpochTotals
from rdist.errors import RdistError
from rdist.methods import Step
from rdist.parallel import sum_over_ranks
from rdist.runs import BEST, CHECKPOINT, LAST, EpochRecord, read_log
from rdist.utils import first_line


@dataclass
class RunResult:
    run_dir: Path
    best_path: Path | None
    last_path: Path | None
    epochs_done: int  # complete epochs (a run cut by max_steps may have trained part of one more)
    global_step: int
    best_epoch: int | None
    best_acc: float | None  # accuracy (`select_metric`) of best.safetensors on the selection split
    stopped_by: str  # "epochs" or "max_steps"
    history: list[EpochRecord] = field(default_factory=list)  # the log.jsonl records
    select_metric: str = "pgd20"  # the validation accuracy best.safetensors was selected on

    def to_dict(self) -> dict[str, Any]:
        values = {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items() if k != "history"}
        return {**values, "history": [record.to_json() for record in self.history]}


def train(config: TrainConfig, callback: Callback | None = None) -> RunResult:
    """Train the run `config` describes (or continue it, with `config.resume`); returns where it wrote what.

    A run directory (`config.out`) that holds a checkpoint of the same run is continued, as `--resume` would: a
    cluster's requeue or torchrun's restart runs the same command again. Another run there is refused."""
    config = config.with_absolute_paths()
    check_run_dir(config)
    run = build_run(config)
    # Held before anything is written there, and before the checkpoint that a resume continues is read.
    try:
        with hold_run_dir(run), run.parallel.group.session(resume_advice(run.run_dir)):
            return Trainer(run, callback or Callback()).fit()
    finally:
        run.close()


def resume_advice(run_dir: Path) -> str:
    """How to go on after a run stopped: what a lost peer's error ends with."""
    return (f"the last finished epoch's checkpoint is in {run_dir}: continue with --resume {run_dir}, or run the same "
            "command again (as torchrun --max-restarts does)")


def attack_seed(seed: int, epoch: int) -> int:
    # Disjoint from the data seeds of Batches (seed * 1_000_003 + epoch).
    return (1 << 40) + seed * 1_000_003 + epoch


class Trainer:
    def __init__(self, run: Run, callback: Callback):
        # One composite, so that the checkpoint keeps every callback's state by its name whatever was passed.
        self.run, self.callback = run, callback if isinstance(callback, Callbacks) else Callbacks([callback])
        self.config, self.schedule, self.device = run.config, run.schedule, run.device
        self.main, self.parallel = run.ranks.is_main, run.parallel
        # Under --compile every batch has the same shape: a smaller last batch would be compiled again.
        self.batches = self.parallel.batches(run.train_x, run.train_y, self.schedule.batch_size, shuffle=True,
                                             augment=True, seed=self.config.seed, drop_last=self.config.compile,
                                             extra=run.extra, fraction=self.config.extra_fraction)
        self.optimizer, self.scheduler = build_optimizer(run.student, self.schedule, len(self.batches))
        self.average = weight_average(run.student, self.schedule.average)  # EMA or SWA, or None
        compile_ = torch.compile if self.config.compile else (lambda module: module)
        self.model = compile_(run.student)  # the attack, the accuracy probe and the evaluation run it unwrapped
        wrapped = self.parallel.wrap(run.student)
        self.update_model = self.model if wrapped is run.student else compile_(wrapped)  # the outer loss: DDP
        self.teachers = {role: compile_(teacher) for role, teacher in run.teachers.items()}
        self.companions = Companions(run.companions, run.companion_plans, self.parallel, compile_, len(self.batches))
        self.sums: dict[str, torch.Tensor] = {}  # the epoch's `step.sums` (Method.epoch_sums)
        self.epoch = self.global_step = 0
        self.checkpoint_epoch = 0  # the last epoch whose checkpoint is on disk
        self.best_epoch: int | None = None
        self.best_acc: float | None = None
        # A checkpoint in a new run's --out is the same command run again (a requeue, a restart): continued if it
        # is the same run (`_restore` refuses another), under the directory's lock, held since `train` began.
        self.restored = bool(self.config.resume) or run.directory.has_checkpoint()
        if self.restored:
            self._restore()
        if self.main:
            run.run_dir.mkdir(parents=True, exist_ok=True)
            write_config_file(run)
            self.log = EpochLog(run.directory.log, keep_through=self.epoch)

    def _restore(self) -> None:
        state = load_checkpoint(self.run.run_dir)
        check_same_run(self.run.run_dir, state["identity"], self.run.identity(), asked=bool(self.config.resume))
        try:
            load_weights(self.run.student, state["model"], CHECKPOINT)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            if self.average is not None:
                self.average.load_state_dict(state["average"])
            self.companions.load_state_dict(state["companions"], CHECKPOINT)
            self.run.method.load_state_dict(state["method_state"])
            restore_rng(state["rng"])
        except RdistError as exc:
            raise RdistError(f"cannot resume {self.run.run_dir}: {exc}; start a new run") from None
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise RdistError(f"cannot resume {self.run.run_dir}: the optimiser, schedule, weight average or RNG state "
                             f"in {CHECKPOINT} (the student's or a companion's) does not fit this run "
                             f"({first_line(exc)}); start a new run") from None
        self.epoch = self.checkpoint_epoch = state["epoch"]
        self.global_step = state["global_step"]
        self.best_epoch, self.best_acc = state["best_epoch"], state["best_acc"]
        self.callback.load_state_dict(state["callbacks"])

    def fit(self) -> RunResult:
        result = None
        try:  # on_run_start too: a callback that fails to start (a tracker) still lets the others release theirs
            self.callback.on_run_start(self.run.run_dir, self.epoch + 1, self.schedule.epochs, len(self.batches),
                                       self.restored)
            with cudnn_autotune(self.device):
                for epoch in range(self.epoch + 1, self.schedule.epochs + 1):
                    if self._steps_left() == 0:
                        break
                    self._epoch(epoch)
            result = self._result("epochs" if self.epoch == self.schedule.epochs else "max_steps")
        finally:
            self.callback.on_run_end(result)
        return result

    def _steps_left(self) -> int | None:
        return None if self.config.max_steps is None else max(0, self.config.max_steps - self.global_step)

    def _epoch(self, epoch: int) -> None:
        """Train, evaluate and select, record, save: one epoch. A partial (max_steps) epoch is evaluated and saved
        as last, never selected: best.safetensors must be a state the checkpoint's best_epoch/best_acc describe,
        and a checkpoint only holds whole epochs."""
        started = time.perf_counter()
        steps = len(self.batches) if self._steps_left() is None else min(len(self.batches), self._steps_left())
        complete = steps == len(self.batches)
        self.callback.on_epoch_start(epoch, self.schedule.epochs, steps)
        totals = self._train_steps(epoch, steps).over_ranks()
        train_seconds = time.perf_counter() - started
        if complete:
            self._finish_epoch(epoch)
        model, average = self._model_to_save(epoch)
        report = self._evaluate_and_select(model, epoch, complete, average)
        accuracy = report["accuracy"] if report else {}
        record = EpochRecord(
            epoch=epoch, partial=not complete, global_step=self.global_step, lr=totals.lr, train_loss=totals.mean_loss,
            train_clean_acc=totals.clean_acc, train_robust_acc=totals.robust_acc, split=self.run.eval_split,
            clean_acc=accuracy.get("clean"), pgd20_acc=accuracy.get("pgd20"), eval_n=len(self.run.eval_y),
            best_epoch=self.best_epoch, average=(average or {}).get("kind"), train_seconds=round(train_seconds, 3),
            seconds=round(time.perf_counter() - started, 3), images_per_s=round(totals.images / train_seconds, 1))
        if self.main:
            self._save(model, record, report, complete, average)
        self.callback.on_epoch_end(record)

    def _finish_epoch(self, epoch: int) -> None:
        """What ends a whole epoch: the method's epoch-end hook (with its sums over the ranks) and SWA's update, once
        it has begun (the lr schedules step with every step)."""
        self.run.method.end_epoch(epoch, {name: sum_over_ranks(total) for name, total in self.sums.items()})
        if self.average is not None:
            self.average.after_epoch(epoch)
        self.epoch = epoch

    def _evaluate_and_select(self, model: torch.nn.Module, epoch: int, complete: bool, average: dict | None
                             ) -> dict[str, Any] | None:
        """The epoch's robustness report (None when --eval-every skips it); a whole epoch that beats the best so
        far becomes best.safetensors."""
        if complete and epoch % self.config.eval_every != 0 and epoch != self.schedule.epochs:
            return None
        report = eval_report(self.run, self._evaluate(model, epoch), epoch)
        accuracy = report["accuracy"][self.run.method.select_metric]
        if complete and (self.best_acc is None or accuracy > self.best_acc):
            self.best_acc, self.best_epoch = accuracy, epoch
            if self.main:
                save_artifact(self.run, model, BEST, epoch=epoch, global_step=self.global_step, report=report,
                              best_epoch=epoch, average=average)
        return report

    def _save(self, model: torch.nn.Module, record: EpochRecord, report: dict[str, Any] | None,
              complete: bool, average: dict | None) -> None:
        """The log line, last.safetensors and, for a whole epoch, the checkpoint: last, so that a kill before it
        costs only the epoch."""
        self.log.write(record)
        save_artifact(self.run, model, LAST, epoch=record.epoch, global_step=self.global_step, report=report,
                      best_epoch=self.best_epoch, average=average)
        for role, companion in self.companions.models.items():
            save_companion(self.run, role, companion, epoch=record.epoch, global_step=self.global_step)
        if complete:
            self._save_checkpoint()

    def _train_steps(self, epoch: int, steps: int) -> EpochTotals:
        self.batches.set_epoch(epoch)
        generator = torch.Generator(device=self.device).manual_seed(attack_seed(self.config.seed, epoch))
        totals = EpochTotals(self.optimizer.param_groups[0]["lr"], steps, self.device)
        method, companions = self.run.method, self.companions
        self.sums = method.new_sums(self.run.dataset.num_classes, self.device)
        for step, (x, y) in enumerate(itertools.islice(self.batches, steps), 1):
            # Under torchrun: this rank's rows of the global batch's random starts, its share of the gradient, and
            # the batch's statistics over the ranks.
            noise, grad_scale, rows = self.parallel.shard(generator, self.batches, step - 1)
            batch = Step(input_layout(x), y, epoch, self.schedule.epochs, self.teachers, noise,
                         companions=companions.for_attack(), batch=rows, sums=self.sums,
                         lr_scale=self.optimizer.param_groups[0]["lr"] / self.schedule.lr,
                         label_smoothing=self.schedule.label_smoothing)
            xa = attack_phase(self.model, method, batch)
            batch.companions = companions.for_update()
            totals.add(update_phase(self.update_model, method, batch, xa, self.optimizer, grad_scale,
                                    others=list(companions.optimizers.values())))
            self.scheduler.step()  # the next step's lr (host arithmetic: no wait for the device)
            companions.step_schedules()
            # Without --sync-bn rank 0's BN statistics everywhere; the method's state kept equal on every rank.
            self.parallel.sync_buffers(self.run.student, *companions.models.values(), state=method.state_tensors())
            if self.average is not None:
                self.average.after_step()  # the EMA's update
            self.global_step += 1
            if step % self.callback.report_every == 0 or step == steps:
                self._read(totals, epoch, steps)
        return totals

    def _read(self, totals: EpochTotals, epoch: int, steps: int) -> None:
        """Read the steps since the last read; stop at the first non-finite loss among them, before anything of
        this epoch is saved (the steps after it ran on its garbage and are discarded with it)."""
        # Under torchrun each step's loss is the mean over the ranks (non-finite if any rank's is), so that all stop
        # at the same step: a rank that went on alone would wait forever in the next gradient all-reduce.
        losses = totals.read()
        first_step = totals.steps - len(losses) + 1  # the epoch's 1-based step of losses[0]
        for offset, loss in enumerate(losses):
            if not math.isfinite(loss):
                step = first_step + offset
                raise self._non_finite(loss, epoch, step, steps, self.global_step - totals.steps + step, totals.lr)
        self.callback.on_step(StepInfo(epoch, self.schedule.epochs, totals.steps, steps, self.global_step, losses[-1],
                                       totals.mean_loss, totals.clean_acc, totals.robust_acc, totals.lr,
                                       tuple(losses)))

    def _model_to_save(self, epoch: int) -> tuple[torch.nn.Module, dict | None]:
        """The model epoch `epoch` is evaluated and saved as, and which average it is (None: the live weights): the
        EMA from the start, SWA once it has begun. Called once per epoch, as it sets the average's BN statistics
        (`rdist.engine.averaging`), which every artifact written must hold, evaluated or not. SWA recomputes them
        on the real training split, unaugmented: generated images never enter them (a pass over a file of
        millions each epoch would cost more than the epoch)."""
        if self.average is None or not self.average.active(epoch):
            return self.run.student, None
        refresh = lambda: self.parallel.bn_refresh_batches(self.run.train_x, self.run.train_y,  # noqa: E731
                                                           self.schedule.batch_size)
        return self.average.model(refresh), self.average.describe()

    def _evaluate(self, model: torch.nn.Module, epoch: int):
        """The selection split's robustness, sharded over the ranks under torchrun (every rank gets it all)."""
        # The attack-failure checks are for reports (rdist attack); selection needs the accuracies only.
        return evaluate(model, self.run.eval_x, self.run.eval_y, EVAL_ATTACKS, eps=self.config.eps,
                        seed=self.config.seed, ranks=self.run.ranks, norm=self.config.norm, checks=False,
                        progress=lambda name, done, total, note: self.callback.on_eval(epoch, name, done, total))

    def _save_checkpoint(self) -> None:
        save_checkpoint(self.run.run_dir, {
            "config": self.config.to_dict(), "identity": self.run.identity(), "epoch": self.epoch,
            "global_step": self.global_step, "model": self.run.student.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "average": self.average.state_dict() if self.average is not None else None, "rng": rng_state(),
            "best_epoch": self.best_epoch, "best_acc": self.best_acc, "callbacks": self.callback.state_dict(),
            "companions": self.companions.state_dict(), "method_state": self.run.method.state_dict()})
        self.checkpoint_epoch = self.epoch

    def _non_finite(self, loss: float, epoch: int, step: int, steps: int, global_step: int, lr: float) -> RdistError:
        kept = (f"the last good checkpoint (epoch {self.checkpoint_epoch}) is kept in {self.run.run_dir}"
                if self.checkpoint_epoch else "no epoch had finished, so no checkpoint was written")
        return RdistError(f"training loss is {loss} at step {global_step} (epoch {epoch}, batch {step} of "
                          f"{steps}); training stopped and {kept}; try a lower learning rate (--lr, now {lr:g})")

    def _result(self, stopped_by: str) -> RunResult:
        directory = self.run.directory
        best, last = directory.models()
        return RunResult(directory.path, best, last, self.epoch, self.global_step, self.best_epoch,
                         self.best_acc, stopped_by, read_log(directory.log) if self.main else [],
                         self.run.method.select_metric)
