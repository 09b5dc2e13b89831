"""What `rdist distill` and `rdist teacher train` share: running the training, the progress display and the summary
(their options are in `rdist.cli.options`)."""

from __future__ import annotations

import contextlib
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

from rdist.cli.common import console, err_console, print_json, progress_bar
from rdist.engine import (BEST, CHECKPOINT, LAST, LOG, Callback, EpochRecord, RunResult, StepInfo, TrainConfig,
                          parse_seeds, resume_config, train, train_seeds)
from rdist.engine.config import fill_paper_defaults
from rdist.engine.outputs import check_run_dir
from rdist.engine.seeds import group_dir
from rdist.engine.sync_bn import sync_bn_note
from rdist.errors import RdistError
from rdist.methods import canonical_method, check_kind
from rdist.parallel import ranks_from_env
from rdist.report.profile import RunEstimate, estimate_run, format_count, format_duration
from rdist.utils import parse_eps


def run_training(*, kind: str, resume: Path | None, quiet: bool, json_out: bool, method: str | None,
                 arch: str | None, eps: str | None, step_size: str | None, method_args: dict[str, Any],
                 seeds: str | None = None, **options: Any) -> None:
    """Build the TrainConfig from the given options (or the resumed run's), train, and print the result;
    with `seeds`, one run per seed in a group directory."""
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None and options.get("seed") is not None:
        raise RdistError("give --seed or --seeds, not both")
    if seed_list is not None and resume is not None:
        raise RdistError("--seeds trains a group of runs: continue it by running the same command with its --out "
                         "again, not --resume")
    given = {"method": method, "student": arch, "eps": parse_eps(eps) if eps is not None else None,
             "step_size": parse_eps(step_size, "--step-size") if step_size is not None else None,
             "method_args": method_args, **options}
    if resume is not None:
        config = resume_config(resume, **{**given, "method": canonical_method(method) if method else None})
    else:
        for value, flag in ((method, "--method"), (arch, "--student" if kind == "distill" else "--arch")):
            if value is None:
                raise RdistError(f"{flag} is required (or --resume RUN_DIR to continue a run)")
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    check_kind(config.method, kind, str(resume) if resume is not None else None)
    ranks = ranks_from_env()
    config, defaults = fill_paper_defaults(config)
    # An output that cannot be written is refused before the header announces (and measures) a long run.
    check_run_dir(config.with_absolute_paths())
    estimate = None
    if defaults and ranks.is_main:
        header = "paper defaults: " + "; ".join(map(str, defaults))
        if any(d.option == "--recipe" for d in defaults):
            estimate = estimate_run(config)
            header += (f"; {plural(estimate.steps, 'step')} of {format_count(estimate.flops_per_step)}FLOP: at least "
                       f"{format_duration(estimate.seconds)} on {estimate.device} at its measured "
                       f"{format_count(estimate.flops_per_s)}FLOP/s")
        err_console.print(header, highlight=False, soft_wrap=True, markup=False)
    note = sync_bn_note(ranks.world_size) if config.sync_bn else None
    if note:
        err_console.print(f"[bold yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    # Under torchrun only rank 0 shows progress and the result: the others would repeat them.
    show_progress = not (quiet or json_out or not ranks.is_main)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--sync-bn has no effect")  # said above, once
        if seed_list is not None:
            config = replace(config, out=str(group_dir(config)))  # one group directory for every seed
            results = []
            for seed in seed_list:  # a fresh progress display per seed: rich shows one live display at a time
                with contextlib.ExitStack() as stack:
                    results += train_seeds(config, [seed], EpochProgress(stack, estimate) if show_progress else None)
        else:
            with contextlib.ExitStack() as stack:
                results = [train(config, EpochProgress(stack, estimate) if show_progress else None)]
    if not ranks.is_main:
        return
    if json_out:
        print_json([r.to_dict() for r in results] if seed_list is not None else results[0].to_dict())
        return
    for result in results:
        print_summary(result)


def plural(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'s' * (n != 1)}"


class EpochProgress(Callback):
    """A rich progress bar for the running epoch with the live loss and training accuracies; each finished
    epoch becomes a line with its validation results.

    The bars open when training starts, so that errors found while building the run stay alone on their line.
    """

    # After this many steps (or fewer in a shorter run), a run on the paper's recipe reports its measured pace.
    PACE_STEPS = 11

    def __init__(self, stack: contextlib.ExitStack, estimate: RunEstimate | None = None):
        self.stack, self.bar, self.task, self.epochs = stack, None, None, 0
        self.estimate, self.step_times = estimate, []

    def on_run_start(self, run_dir, start_epoch, epochs, steps_per_epoch, resumed) -> None:
        self.bar = self.stack.enter_context(progress_bar(quiet=False))
        self.run_started = time.perf_counter()
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
        if self.estimate is not None:
            self._report_pace()
        clean = f"  clean {info.clean_acc:.1%}" if info.clean_acc is not None else ""
        robust = f"  robust {info.robust_acc:.1%}" if info.robust_acc is not None else ""
        self.bar.update(self.task, completed=info.step, note=f"loss {info.mean_loss:.4f}{clean}{robust}")

    def _report_pace(self) -> None:
        """Once, after the first steps: the measured seconds per step and what the whole run takes at that pace.
        The first step (warm-up: allocation, cuDNN autotuning, compilation) is left out when others follow."""
        self.step_times.append(time.perf_counter())
        if len(self.step_times) < min(self.PACE_STEPS, self.estimate.steps):
            return
        times = [self.run_started, *self.step_times]
        per_step = (times[-1] - times[1]) / (len(times) - 2) if len(times) > 2 else times[1] - times[0]
        self.bar.console.print(f"first {plural(len(self.step_times), 'step')}: {per_step:.3g} s/step, so the run "
                               f"({plural(self.estimate.steps, 'step')}) takes about "
                               f"{format_duration(per_step * self.estimate.steps)}; --epochs N for a short run",
                               highlight=False, soft_wrap=True)
        self.estimate = None

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


def print_summary(result: RunResult) -> None:
    how = "finished" if result.stopped_by == "epochs" else f"stopped after --max-steps ({result.global_step} steps)"
    console.print(f"{how}: {result.epochs_done} epochs in {result.run_dir}", highlight=False)
    if result.best_path is not None:
        console.print(f"  {BEST}: epoch {result.best_epoch}, {result.select_metric} {result.best_acc:.2%} on the "
                      "selection split",
                      highlight=False)
    others = [name for name in (LAST, LOG, CHECKPOINT) if (result.run_dir / name).is_file()]
    if others:
        console.print(f"  {', '.join(others)}", highlight=False)
