"""The progress of training runs: `EpochProgress` watches them through the engine's callbacks (any number of runs in
turn: seeds, a quickstart's or a reproduction's stages), opening its display (`rdist.cli.progress`) when a run
starts and closing it when the run ends."""

from __future__ import annotations

import time

from rdist.cli.common import err_console
from rdist.cli.progress import new_progress, plural
from rdist.engine import Callback, EpochRecord, RunResult, StepInfo
from rdist.engine.cost import RunCost, format_duration


class RunNotes(Callback):
    """The one line that says a run is continued though no --resume asked for it: its --out held a checkpoint of the
    same run (the same command run again, as a cluster's requeue or torchrun's restart runs it). Printed with
    --quiet too; `EpochProgress` prints it in place of its own first line."""

    def __init__(self, resume_asked: bool):
        self.resume_asked = resume_asked

    def on_run_start(self, run_dir, start_epoch, epochs, steps_per_epoch, resumed) -> bool:
        """Print the line where it applies; returns whether it did."""
        if not resumed or self.resume_asked:
            return False
        line = (f"the run in {run_dir} has finished its {epochs} epochs already (same configuration)"
                if start_epoch > epochs else
                f"continuing the run in {run_dir} from epoch {start_epoch} (same configuration)")
        err_console.print(line, highlight=False, soft_wrap=True)
        return True


class EpochProgress(Callback):
    """A rich progress bar for the running epoch with the live loss and training accuracies; each finished
    epoch becomes a line with its validation results.

    The display opens when a run starts training (errors found while building the run stay alone on their line)
    and closes when it ends, so one EpochProgress watches several runs in turn (rich shows one live display at a
    time). With `estimate` (the cost of each run it watches), every run reports its measured pace after its first
    steps.
    """

    # After this many steps (or fewer in a shorter run), a run with an estimate reports its measured pace.
    PACE_STEPS = 11

    def __init__(self, estimate: RunCost | None = None, resume_asked: bool = True):
        self.estimate, self.bar, self.task, self.epochs = estimate, None, None, 0
        self.notes = RunNotes(resume_asked)

    def on_run_start(self, run_dir, start_epoch, epochs, steps_per_epoch, resumed) -> None:
        self.bar = new_progress()
        self.bar.start()
        self.run_started, self.step_times, self.pace_told = time.perf_counter(), [], self.estimate is None
        if self.notes.on_run_start(run_dir, start_epoch, epochs, steps_per_epoch, resumed):
            return
        if start_epoch > epochs:
            err_console.print(f"{run_dir} has finished its {epochs} epochs already", highlight=False, soft_wrap=True)
            return
        action = f"resuming at epoch {start_epoch}" if resumed else "training"
        err_console.print(f"{action}: {epochs} epoch{'s' * (epochs != 1)} of {steps_per_epoch} steps, run directory "
                          f"{run_dir}", highlight=False, soft_wrap=True)

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        self.epochs = epochs
        self.task = self.bar.add_task(f"epoch {epoch}/{epochs}", total=steps, note="")

    def on_step(self, info: StepInfo) -> None:
        if not self.pace_told:
            self._report_pace()
        clean = f"  clean {info.clean_acc:.1%}" if info.clean_acc is not None else ""
        robust = f"  robust {info.robust_acc:.1%}" if info.robust_acc is not None else ""
        self.bar.update(self.task, completed=info.step, note=f"loss {info.mean_loss:.4f}{clean}{robust}")

    def _report_pace(self) -> None:
        """Once a run, after its first steps: the measured seconds per step and what the whole run takes at that
        pace. The first step (warm-up: allocation, cuDNN autotuning, compilation) is left out when others follow."""
        self.step_times.append(time.perf_counter())
        if len(self.step_times) < min(self.PACE_STEPS, self.estimate.steps):
            return
        times = [self.run_started, *self.step_times]
        per_step = (times[-1] - times[1]) / (len(times) - 2) if len(times) > 2 else times[1] - times[0]
        self.bar.console.print(f"first {plural(len(self.step_times), 'step')}: {per_step:.3g} s/step, so the run "
                               f"({plural(self.estimate.steps, 'step')}) takes about "
                               f"{format_duration(per_step * self.estimate.steps)}; --epochs N for a short run",
                               highlight=False, soft_wrap=True)
        self.pace_told = True

    def on_eval(self, epoch: int, attack: str, done: int, total: int) -> None:
        self.bar.update(self.task, note=f"evaluating {attack} {done}/{total}")

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Replace the finished epoch's bar by one log line, so a long run keeps a single live bar on screen."""
        line = f"epoch {record.epoch}/{self.epochs}  loss {record.train_loss:.4f}"
        if record.clean_acc is not None:
            line += f"  {record.split} clean {record.clean_acc:.1%}  pgd20 {record.pgd20_acc:.1%}"
        line += f"  ({record.seconds:.1f} s, {record.images_per_s:.0f} images/s)"
        self.bar.remove_task(self.task)
        self.bar.console.print(line, highlight=False)

    def on_run_end(self, result: RunResult | None) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
