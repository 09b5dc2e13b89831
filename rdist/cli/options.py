"""The options `rdist distill` and `rdist teacher train` share, and what their repeatable options become.

Help texts that speak of methods are made from the method registry (each hyper-parameter's field comment, the
papers' values and recipes), so that they say what each method does and cannot go stale when one is added.
"""

from __future__ import annotations

import re
from typing import Any

import typer

from rdist.cli.common import data_option
from rdist.errors import RdistError
from rdist.methods import NATURAL, ROBUST, Recipe, list_methods, method_class, preset_notes

def parse_hparams(values: list[str] | None, named: dict[str, float | None] | None = None) -> dict[str, Any]:
    """`--hparam NAME=VALUE` (repeatable: any hyper-parameter a method declares) merged with the named options
    (`--alpha`, ...; None = not given); a value is a number, true or false; a name given twice is refused."""
    given_values = {k: v for k, v in (named or {}).items() if v is not None}
    given = {k: f"--{k.replace('_', '-')} {v}" for k, v in given_values.items()}  # how each value was given
    for text in values or []:
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.+)", text)
        if not match:
            raise RdistError(f"cannot read --hparam '{text}': write NAME=VALUE, e.g. --hparam kl_scale=0.5")
        name, raw = match.groups()
        if name in given_values:
            raise RdistError(f"{name} is given twice ({given[name]} and --hparam {text}); give it once")
        given_values[name], given[name] = _hparam_value(raw, text), f"--hparam {text}"
    return given_values


def _hparam_value(raw: str, text: str) -> int | float | bool:
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            pass
    raise RdistError(f"cannot read --hparam '{text}': the value must be a number, true or false")


def parse_teachers(values: list[str] | None, natural: str | None = None) -> dict[str, str]:
    """`--teacher MODEL` (the robust teacher), `--teacher ROLE=MODEL` (any role, repeatable) and
    `--natural-teacher MODEL` as one role -> model mapping; a role given twice is refused."""
    teachers: dict[str, str] = {}
    given = [match.groups() if (match := re.fullmatch(r"([a-z][a-z0-9_-]*)=(.+)", value)) else (ROBUST, value)
             for value in values or []]
    for role, spec in given + ([(NATURAL, natural)] if natural is not None else []):
        if role in teachers:
            raise RdistError(f"two models given for the {role} teacher ({teachers[role]} and {spec}); give one")
        teachers[role] = spec
    return teachers


def hparam_help(hparam: str, kind: str = "distill") -> str:
    """The help of a hyper-parameter's option: what it does in each method of `kind` that has it (its field's
    comment), the papers' values, and the values `--recipe paper` sets instead."""
    described: dict[str, list[str]] = {}  # what it does -> who has it
    defaults = []
    for name in list_methods(kind):
        cls, (base, _, term) = method_class(name), name.partition("+")
        if hparam not in cls.defaults() or (term and hparam in method_class(base).defaults()):
            continue  # a composition's base hyper-parameters are its base's
        owner = f"+{term}" if term else name  # a term's are the term's ("+igdm"), whatever its base
        comment, default = cls.described()[hparam], cls.defaults()[hparam]
        what, _, unset = comment.partition("; None: ")  # a None default says in its comment what it means
        if owner not in described.setdefault(what, []):
            described[what].append(owner)
            defaults.append(f"{owner} {unset.split(',')[0] if default is None else format(default, 'g')}")
    what = (next(iter(described)) if len(described) == 1
            else "; ".join(f"{', '.join(owners)}: {text}" for text, owners in described.items()))
    notes = preset_notes(hparam, kind)
    paper = f"; with --recipe paper: {', '.join(notes)}" if notes else ""
    # "\\[" keeps rich markup from swallowing the bracketed default notes.
    return f"{what} \\[default: the method's paper value: {', '.join(defaults)}{paper}]"


def recipe_option(flag: str, field: str, what: str, default: str, kind: str, paper_only: bool = True):
    """The option `flag` of a `Recipe` `field`; its help names the methods of `kind` whose recipe sets another
    value than the default (applied with `--recipe paper` only, when `paper_only`)."""
    standard = getattr(Recipe, field)  # the dataclass field's default
    values = [f"{name} {getattr(method_class(name).recipe, field):g}" for name in list_methods(kind)
              if getattr(method_class(name).recipe, field) != standard]
    note = f"; {'with --recipe paper: ' if paper_only else ''}{', '.join(values)}" if values else ""
    return typer.Option(None, flag, help=f"{what} \\[default: {default}{note}]")


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
    return recipe_option(flag, field, what, default, kind)


def lr_option(kind: str):
    return recipe_option("--lr", "lr", "initial SGD learning rate", "the method's recipe's, 0.1", kind,
                         paper_only=False)


# Options both commands take. None means "not given": a resumed run keeps its own value, a new run the default.
DATA = data_option("cifar10")
EPOCHS = typer.Option(None, "--epochs", help="epochs to train; lr x0.1 at 50% and 75% of them "
                      "\\[default with --recipe paper: the paper's]")
MAX_STEPS = typer.Option(None, "--max-steps", help="stop after this many optimiser steps in all (a short run); "
                         "last.safetensors is still written, best.safetensors once an epoch has finished")
RECIPE = typer.Option(None, "--recipe", help="'paper': the method's paper recipe (epochs, lr milestones, weight "
                      "decay, lr, batch size, SWA, attack eps and step); options given explicitly override it")
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
# The recipe of the generated-data papers (Gowal et al. 2020, Rebuffi et al. 2021, Wang et al. 2023): their images,
# the weight average, the schedule.
EXTRA_DATA = typer.Option(None, "--extra-data", metavar="SOURCE", help="generated images mixed into every batch: "
                          "PATH.npz with arrays image/label (N x H x W x C, as DeepMind's DDPM and the EDM sets) or "
                          "x_train/y_train (N x C x H x W, rdist's layout), hf://datasets/ORG/REPO[@REV]/PATH, "
                          "https://.../NAME.npz (downloaded once), or parts separated by commas; memory-mapped, "
                          "checked before anything trains. An epoch stays one pass over the real training images")
EXTRA_FRACTION = typer.Option(None, "--extra-fraction", metavar="F", help="the generated share of every batch: "
                              "round(F x batch size) images \\[default: 0.7, the recipes' value]")
EMA = typer.Option(None, "--ema", metavar="DECAY", help="evaluate, select and save an exponential moving average "
                   "of the weights, updated every step with the warm-up decay min(DECAY, (1+t)/(10+t)) of Gowal et "
                   "al.'s code (the recipes: 0.995)")
WARMUP_EPOCHS = typer.Option(None, "--warmup-epochs", help="epochs of linear lr warm-up from 0, step by step "
                             "\\[default: 0]")
NESTEROV = typer.Option(None, "--nesterov/--no-nesterov", help="Nesterov momentum (the generated-data recipes) "
                        "\\[default: off]")
LABEL_SMOOTHING = typer.Option(None, "--label-smoothing", help="label smoothing of the cross-entropy terms of the "
                               "method's loss (not of its attack or KL terms; the recipes: 0.1) \\[default: 0]")
SCHEDULE = typer.Option(None, "--schedule", help="the lr schedule: step (x0.1 after each milestone epoch, the "
                        "papers') or cosine (to 0 over the run, every step, as the generated-data recipes) "
                        "\\[default: step]")


def swa_start_option(kind: str):
    return recipe_option("--swa-start", "swa_start", "evaluate, select and save the average of the weights at the "
                         "end of each epoch from this one on (SWA; BN statistics recomputed on the training data)",
                         "none", kind)


HPARAM = typer.Option(None, "--hparam", metavar="NAME=VALUE", help="any hyper-parameter the method declares, by "
                      "its field name (the options above are the common ones): e.g. --hparam kl_scale=0.5; "
                      "repeatable")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress bar")
JSON_OUT = typer.Option(False, "--json", help="print the run's result (paths, best epoch, per-epoch log) as JSON")
