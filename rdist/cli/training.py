"""What `rdist distill` and `rdist teacher train` share: their options, the progress display and the summary."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import typer

from rdist.cli.common import console, data_option, err_console, print_json
from rdist.cli.progress import EpochProgress, plural
from rdist.engine import (BEST, CHECKPOINT, LAST, LOG, RunResult, TrainConfig, parse_seeds, resume_config, train,
                          train_seeds)
from rdist.engine.defaults import resolve_defaults
from rdist.engine.distributed import ranks_from_env, sync_bn_note
from rdist.engine.rundir import check_run_dir
from rdist.errors import RdistError
from rdist.methods import METHODS, Recipe, canonical_method, check_kind
from rdist.methods.igdm import IGDM
from rdist.engine.cost import format_duration, matmul_flops_per_s, run_cost
from rdist.report.profile import format_count
from rdist.utils import default_device, parse_eps


def paper_defaults(hparam: str, kind: str) -> str:
    """'ard 30, kd 4': the paper value of `hparam` for each method of `kind` that has it."""
    if hparam.startswith("igdm_"):
        return f"{IGDM.hyperparameters()[hparam]:g}"
    # ARD's kl_scale default is None, meaning 1/C (the official code's element mean over C classes).
    values = {name: cls.hyperparameters() for name, cls in METHODS.items() if cls.kind == kind}
    return ", ".join(f"{name} {'1/C' if hparams[hparam] is None else format(hparams[hparam], 'g')}"
                     for name, hparams in values.items() if hparam in hparams)


def hparam_help(what: str, hparam: str, kind: str = "distill") -> str:
    return f"{what} \\[default: the method's paper value: {paper_defaults(hparam, kind)}]"


# The training attack's options: flag -> (Recipe field, default, help).
ATTACK_OPTIONS = {
    "--eps": ("eps", "8/255", "L-inf budget of the training attack and the evaluation, in [0,1] pixel units: "
              "8/255 or 0.031"),
    "--step-size": ("step_size", "2/255", "step of the training attack"),
    "--steps": ("attack_steps", "10", "iterations of the training attack"),
}


def attack_option(flag: str, kind: str):
    """The option `flag` of the training attack; its help names the methods of `kind` whose paper recipe
    (`--recipe paper`) sets another value than the default."""
    field, default, what = ATTACK_OPTIONS[flag]
    standard = getattr(Recipe, field)  # the dataclass field's default
    papers = [f"{name} {getattr(cls.recipe, field):g}" for name, cls in METHODS.items()
              if cls.kind == kind and getattr(cls.recipe, field) != standard]
    note = f"; with --recipe paper: {', '.join(papers)}" if papers else ""
    return typer.Option(None, flag, help=f"{what} \\[default: {default}{note}]")


# Options both commands take. None means "not given": a resumed run keeps its own value, a new run the default.
# "\\[" keeps rich markup from swallowing the bracketed default notes.
DATA = data_option("cifar10")
EPOCHS = typer.Option(None, "--epochs", help="epochs to train; lr x0.1 at 50% and 75% of them "
                      "\\[default with --recipe paper: the paper's]")
MAX_STEPS = typer.Option(None, "--max-steps", help="stop after this many optimiser steps in all (a short run); "
                         "last.safetensors is still written, best.safetensors once an epoch has finished")
RECIPE = typer.Option(None, "--recipe", help="'paper': the method's paper recipe (epochs, lr milestones, weight "
                      "decay, lr, batch size, SWA, attack eps and step); options given explicitly override it")
LR = typer.Option(None, "--lr", help="initial SGD learning rate \\[default: the method's paper value, 0.1 "
                  "except MART's ResNet-18 recipe, 0.01]")
WEIGHT_DECAY = typer.Option(None, "--weight-decay",
                            help="SGD weight decay \\[default: the method's paper value]")
BATCH_SIZE = typer.Option(None, "--batch-size", help="training batch size \\[default: 128]")
OUT = typer.Option(None, "--out", "-o", help="run directory for best/last.safetensors, log.jsonl and checkpoint.pt "
                   "\\[default: runs/<method>-<arch>-<data>-<timestamp>]")
RESUME = typer.Option(None, "--resume", help="continue the run in this directory from its last finished epoch "
                      "(other options may be left out; given ones must match the run)")
SEED = typer.Option(None, "--seed", help="seed of the initialisation, data order and attacks \\[default: 0]")
SEEDS = typer.Option(None, "--seeds", help="several seeds, e.g. 0,1,2: one run directory per seed (seed-N) under "
                     "--out, a group directory that `rdist compare --runs` shows as one row, mean +- std; the same "
                     "command again continues the group")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:1 \\[default: cuda if available]")
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile the models (faster long runs on CUDA); "
                       "drops each epoch's last partial batch, so that no batch shape is compiled twice")
SYNC_BN = typer.Option(None, "--sync-bn/--no-sync-bn", help="under torchrun: BatchNorm normalises with the "
                       "statistics of the whole global batch (SyncBatchNorm; the same numbers as one process with "
                       "that batch, at one all-reduce per BN layer). Off: each process's BN sees its own shard, as "
                       "the official single-GPU codes' BN sees per-GPU batches, and the running statistics are "
                       "rank 0's \\[default: off]")
DIST_BACKEND = typer.Option(None, "--dist-backend", help="under torchrun: nccl or gloo \\[default: nccl on CUDA, "
                            "gloo on the CPU]")
SELECT_ON = typer.Option(None, "--select-on", help="'val' (a held-out split of the training data) or 'test' "
                         "(the papers' protocol; it leaks the test set) for best.safetensors \\[default: val]")
EVAL_EVERY = typer.Option(None, "--eval-every", help="evaluate clean and PGD-20 accuracy every N epochs "
                          "\\[default: 1]")
EVAL_N = typer.Option(None, "--eval-n", help="images of the selection split to evaluate on "
                      "\\[default: 1000 on CUDA, 500 on the CPU]")
HPARAM = typer.Option(None, "--hparam", metavar="NAME=VALUE", help="any hyper-parameter the method declares, by "
                      "its field name (the options above are the common ones): e.g. --hparam kl_scale=0.5; "
                      "repeatable")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bar")
JSON_OUT = typer.Option(False, "--json", help="print the run's result (paths, best epoch, per-epoch log) as JSON")


def run_training(*, kind: str, resume: Path | None, quiet: bool, json_out: bool, method: str | None,
                 arch: str | None, eps: str | None, step_size: str | None, hparams: dict[str, float | None],
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
             "step_size": parse_eps(step_size, "--step-size") if step_size is not None else None, "hparams": hparams,
             **options}
    if resume is not None:
        config = resume_config(resume, **{**given, "method": canonical_method(method) if method else None})
    else:
        for value, flag in ((method, "--method"), (arch, "--student" if kind == "distill" else "--arch")):
            if value is None:
                raise RdistError(f"{flag} is required (or --resume RUN_DIR to continue a run)")
        config = TrainConfig(**{k: v for k, v in given.items() if v is not None})
    check_kind(config.method, kind, str(resume) if resume is not None else None)
    ranks = ranks_from_env()
    config, defaults = resolve_defaults(config)
    # An output that cannot be written is refused before the header announces (and measures) a long run.
    check_run_dir(config.with_absolute_paths())
    estimate = None
    if defaults and ranks.is_main:
        header = "paper defaults: " + "; ".join(map(str, defaults))
        if any(d.option == "--recipe" for d in defaults):
            estimate = run_cost(config)
            device = default_device(config.device)
            rate = matmul_flops_per_s(device)
            header += (f"; {plural(estimate.steps, 'step')} of {format_count(estimate.flops_per_step)}FLOP: at least "
                       f"{format_duration(estimate.train_flops / rate)} on {device} at its measured "
                       f"{format_count(rate)}FLOP/s")
        err_console.print(header, highlight=False, soft_wrap=True, markup=False)
    note = sync_bn_note(ranks.world_size) if config.sync_bn else None
    if note:
        err_console.print(f"[bold yellow]warning:[/] {note}", highlight=False, soft_wrap=True)
    # Under torchrun only rank 0 shows progress and the result: the others would repeat them.
    show_progress = not (quiet or json_out or not ranks.is_main)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--sync-bn has no effect")  # said above, once
        progress = EpochProgress(estimate) if show_progress else None
        results = train_seeds(config, seed_list, progress) if seed_list is not None else [train(config, progress)]
    if not ranks.is_main:
        return
    if json_out:
        print_json([r.to_dict() for r in results] if seed_list is not None else results[0].to_dict())
        return
    for result in results:
        print_summary(result)


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
