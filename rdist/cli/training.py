"""What `rdist distill` and `rdist teacher train` share: their options, the progress display and the summary."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import typer

from rdist.cli.common import console, err_console, print_json, progress_bar
from rdist.engine import BEST, CHECKPOINT, LAST, LOG, Callback, RunResult, StepInfo, TrainConfig, resume_config, train
from rdist.errors import RdistError
from rdist.methods import METHODS, list_methods
from rdist.methods.igdm import IGDM
from rdist.methods.registry import IGDM_SUFFIX
from rdist.utils import parse_eps, unknown


def paper_defaults(hparam: str, kind: str) -> str:
    """'ard 30, kd 4': the paper value of `hparam` for each method of `kind` that has it."""
    if hparam.startswith("igdm_"):
        return f"{IGDM.defaults[hparam]:g}"
    # ARD's kl_scale default is None, meaning 1/C (the official code's element mean over C classes).
    values = [f"{name} {'1/C' if cls.defaults[hparam] is None else format(cls.defaults[hparam], 'g')}"
              for name, cls in METHODS.items() if cls.kind == kind and hparam in cls.defaults]
    return ", ".join(values)


def hparam_help(what: str, hparam: str, kind: str = "distill") -> str:
    return f"{what} \\[default: the method's paper value: {paper_defaults(hparam, kind)}]"


# Options both commands take. None means "not given": a resumed run keeps its own value, a new run the default.
# "\\[" keeps rich markup from swallowing the bracketed default notes.
DATA = typer.Option(None, "--data", "-d", help="cifar10, cifar100, svhn, digits or npz:PATH "
                    "\\[default: cifar10]")
EPOCHS = typer.Option(None, "--epochs", help="epochs to train; lr x0.1 at 50% and 75% of them "
                      "\\[default with --recipe paper: the paper's]")
MAX_STEPS = typer.Option(None, "--max-steps", help="stop after this many optimiser steps in all (a short run); "
                         "last.safetensors is still written, best.safetensors once an epoch has finished")
RECIPE = typer.Option(None, "--recipe", help="'paper': the method's paper recipe (epochs, lr milestones, weight "
                      "decay, lr, batch size, SWA); options given explicitly override it")
LR = typer.Option(None, "--lr", help="initial SGD learning rate \\[default: 0.1]")
WEIGHT_DECAY = typer.Option(None, "--weight-decay",
                            help="SGD weight decay \\[default: the method's paper value]")
BATCH_SIZE = typer.Option(None, "--batch-size", help="training batch size \\[default: 128]")
EPS = typer.Option(None, "--eps", help="L-inf budget of the training attack and the evaluation, in [0,1] pixel "
                   "units: 8/255 or 0.031 \\[default: 8/255]")
STEP_SIZE = typer.Option(None, "--step-size", help="step of the training attack \\[default: 2/255]")
STEPS = typer.Option(None, "--steps", help="iterations of the training attack \\[default: 10]")
OUT = typer.Option(None, "--out", "-o", help="run directory for best/last.safetensors, log.jsonl and checkpoint.pt "
                   "\\[default: runs/<method>-<arch>-<data>-<timestamp>]")
RESUME = typer.Option(None, "--resume", help="continue the run in this directory from its last finished epoch "
                      "(other options may be left out; given ones must match the run)")
SEED = typer.Option(None, "--seed", help="seed of the initialisation, data order and attacks \\[default: 0]")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:1 \\[default: cuda if available]")
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile the models (faster long runs on CUDA); "
                       "drops each epoch's last partial batch, so that no batch shape is compiled twice")
SELECT_ON = typer.Option(None, "--select-on", help="'val' (a held-out split of the training data) or 'test' "
                         "(the papers' protocol; it leaks the test set) for best.safetensors \\[default: val]")
EVAL_EVERY = typer.Option(None, "--eval-every", help="evaluate clean and PGD-20 accuracy every N epochs "
                          "\\[default: 1]")
EVAL_N = typer.Option(None, "--eval-n", help="images of the selection split to evaluate on "
                      "\\[default: 1000 on CUDA, 500 on the CPU]")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bar")
JSON_OUT = typer.Option(False, "--json", help="print the run's result (paths, best epoch, per-epoch log) as JSON")


def check_method(name: str, kind: str, resume: Path | None) -> None:
    """Refuse a method of the other command with a pointer to the right one; unknown names get suggestions."""
    base = name.removesuffix(IGDM_SUFFIX)
    if base not in METHODS:
        raise unknown("method", name, list_methods(kind))
    if METHODS[base].kind != kind:
        command = "rdist teacher train" if METHODS[base].kind == "teacher" else "rdist distill"
        what = "distillation" if kind == "distill" else "teacher training"
        if resume is not None:
            raise RdistError(f"{resume} is a run of {base}, not a {what} run: use `{command} --resume {resume}`")
        raise RdistError(f"{base} is not a {what} method: use `{command} --method {base}` "
                         f"(methods here: {', '.join(list_methods(kind))})")


def run_training(*, kind: str, resume: Path | None, quiet: bool, json_out: bool, method: str | None,
                 arch: str | None, eps: str | None, step_size: str | None, hparams: dict[str, float | None],
                 **options: Any) -> None:
    """Build the TrainConfig from the given options (or the resumed run's), train, and print the result."""
    given = {"method": method, "student": arch, "eps": parse_eps(eps) if eps is not None else None,
             "step_size": parse_eps(step_size) if step_size is not None else None, "hparams": hparams, **options}
    if resume is not None:
        config = resume_config(resume, **given)
    else:
        for value, flag in ((method, "--method"), (arch, "--student" if kind == "distill" else "--arch")):
            if value is None:
                raise RdistError(f"{flag} is required (or --resume RUN_DIR to continue a run)")
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    check_method(config.method, kind, resume)
    with contextlib.ExitStack() as stack:
        result = train(config, None if quiet or json_out else EpochProgress(stack))
    if json_out:
        print_json(result.to_dict())
    else:
        print_summary(result)


class EpochProgress(Callback):
    """A rich progress bar for the running epoch with the live loss and training accuracies; each finished
    epoch becomes a line with its validation results.

    The bars open when training starts, so that errors found while building the run stay alone on their line.
    """

    def __init__(self, stack: contextlib.ExitStack):
        self.stack, self.bar, self.task, self.epochs = stack, None, None, 0

    def on_run_start(self, run_dir, start_epoch, epochs, steps_per_epoch, resumed) -> None:
        self.bar = self.stack.enter_context(progress_bar(quiet=False))
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
        clean = f"  clean {info.clean_acc:.1%}" if info.clean_acc is not None else ""
        robust = f"  robust {info.robust_acc:.1%}" if info.robust_acc is not None else ""
        self.bar.update(self.task, completed=info.step, note=f"loss {info.mean_loss:.4f}{clean}{robust}")

    def on_eval(self, epoch: int, attack: str, done: int, total: int) -> None:
        self.bar.update(self.task, note=f"evaluating {attack} {done}/{total}")

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """Replace the finished epoch's bar by one log line, so a long run keeps a single live bar on screen."""
        split = "test" if "test_clean_acc" in record else "val"
        line = f"epoch {record['epoch']}/{self.epochs}  loss {record['train_loss']:.4f}"
        if record[f"{split}_clean_acc"] is not None:
            line += f"  {split} clean {record[f'{split}_clean_acc']:.1%}  pgd20 {record[f'{split}_pgd20_acc']:.1%}"
        line += f"  ({record['seconds']:.1f} s, {record['images_per_s']:.0f} images/s)"
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
