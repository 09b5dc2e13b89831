"""The options `rdist distill` and `rdist teacher train` share, and what their repeatable options become.

Help texts that speak of methods are made from the method registry (each hyper-parameter's field comment, the
papers' values and recipes), so that they say what each method does and cannot go stale when one is added.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from rdist.cli.common import MODEL_HELP, data_dir_option, data_option
from rdist.errors import RdistError
from rdist.methods import NATURAL, ROBUST, Recipe, list_methods, method_class, preset_notes
from rdist.utils import suggest

# The panels of `rdist distill --help` and `rdist teacher train --help` (Typer's rich_help_panel), in order.
METHOD_PANEL = "Method and hyper-parameters"
TEACHERS_PANEL = "Teachers"
DATA_PANEL = "Data and checkpoint selection"
SCHEDULE_PANEL = "Schedule"
ATTACK_PANEL = "Training attack"
RUN_PANEL = "Run directory"
DEVICE_PANEL = "Device and distributed"
OUTPUT_PANEL = "Output"

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


def parse_companions(values: list[str] | None) -> dict[str, str]:
    """`--companion ROLE=ARCH|MODEL` (repeatable) as one role -> architecture or model mapping; a role given twice
    is refused."""
    companions: dict[str, str] = {}
    for value in values or []:
        match = re.fullmatch(r"([a-z][a-z0-9_-]*)=(.+)", value)
        if not match:
            raise RdistError(f"cannot read --companion '{value}': write ROLE=ARCH or ROLE=MODEL, e.g. "
                             "--companion peer=resnet18")
        role, spec = match.groups()
        if role in companions:
            raise RdistError(f"two models given for companion {role} ({companions[role]} and {spec}); give one")
        companions[role] = spec
    return companions


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


def hparam_option(name: str, kind: str = "distill"):
    """The named option of hyper-parameter `name` (`--kl-scale` for kl_scale), with `hparam_help`'s text."""
    return typer.Option(None, f"--{name.replace('_', '-')}", help=hparam_help(name, kind), rich_help_panel=METHOD_PANEL)


def recipe_option(flag: str, field: str, what: str, default: str, kind: str, paper_only: bool = True):
    """The option `flag` of a `Recipe` `field`; its help names the methods of `kind` whose recipe sets another
    value than the default (applied with `--recipe paper` only, when `paper_only`)."""
    standard = getattr(Recipe, field)  # the dataclass field's default
    values = [f"{name} {getattr(method_class(name).recipe, field):g}" for name in list_methods(kind)
              if getattr(method_class(name).recipe, field) != standard]
    note = f"; {'with --recipe paper: ' if paper_only else ''}{', '.join(values)}" if values else ""
    panel = ATTACK_PANEL if field in ("eps", "step_size", "attack_steps") else SCHEDULE_PANEL
    return typer.Option(None, flag, help=f"{what} \\[default: {default}{note}]", rich_help_panel=panel)


# The training attack's options: flag -> (Recipe field, default, help).
ATTACK_OPTIONS = {
    "--eps": ("eps", "8/255", "budget of the training attack and the evaluation, in [0,1] pixel units: "
              "8/255 or 0.031 (L-inf), 0.5 (L2)"),
    "--step-size": ("step_size", "2/255", "step of the training attack"),
    "--steps": ("attack_steps", "10", "iterations of the training attack"),
}


def attack_option(flag: str, kind: str):
    """The option `flag` of the training attack; its help names the methods of `kind` whose paper recipe
    (`--recipe paper`) sets another value than the default."""
    field, default, what = ATTACK_OPTIONS[flag]
    return recipe_option(flag, field, what, default, kind)


def norm_option(kind: str):
    """--norm: the training attack's distance; its help names the methods of `kind` that attack in L2."""
    l2 = [name for name in list_methods(kind) if "L2" in getattr(method_class(name), "norms", ("Linf",))]
    return typer.Option(None, "--norm", rich_help_panel=ATTACK_PANEL, help="distance of the training attack's ball and the evaluation's: Linf, or "
                        f"L2 ({', '.join(l2) or 'no method here'}; the others attack in L-inf only, as their official "
                        "codes); L2 needs --eps and --step-size \\[default: Linf]")


def lr_option(kind: str):
    return recipe_option("--lr", "lr", "initial SGD learning rate", "the method's recipe's, 0.1", kind,
                         paper_only=False)


# Options both commands take. None means "not given": a resumed run keeps its own value, a new run the default.
DATA = data_option("cifar10", DATA_PANEL)
DATA_DIR = data_dir_option(DATA_PANEL)
VAL_SIZE = typer.Option(None, "--val-size", rich_help_panel=DATA_PANEL, help="fraction of the training data held "
                        "out as the selection split \\[default: 0.1, at least min(500, 20%) images]")
SELECT_ON = typer.Option(None, "--select-on", rich_help_panel=DATA_PANEL, help="'val' (a held-out split of the "
                         "training data) or 'test' (the papers' protocol; it leaks the test set) for best.safetensors "
                         "\\[default: val]")
EVAL_EVERY = typer.Option(None, "--eval-every", rich_help_panel=DATA_PANEL, help="evaluate clean and PGD-20 accuracy "
                          "every N epochs \\[default: 1]")
EVAL_N = typer.Option(None, "--eval-n", rich_help_panel=DATA_PANEL, help="images of the selection split to evaluate "
                      "on \\[default: 1000 on CUDA, 500 on the CPU]")
INITIAL_WEIGHTS = typer.Option(None, "--initial-weights", metavar="MODEL", rich_help_panel=METHOD_PANEL,
                               help="start from this model's weights instead of a random initialisation (fine-tune "
                               f"a published student): {MODEL_HELP}, of the student's architecture and --data's "
                               "classes; recorded in the provenance")
COMPANION = typer.Option(None, "--companion", metavar="ROLE=ARCH|MODEL", rich_help_panel=METHOD_PANEL,
                         help="for a method that trains a network beside the student (PeerAiD's peer): an "
                         "architecture to train it from scratch (resnet18, wrn-34-10, ...) or a model to start from "
                         f"({MODEL_HELP}); trained with its own SGD and lr schedule and written as <ROLE>.safetensors "
                         "in the run directory; repeatable \\[default: the method's choice, else the student's "
                         "architecture]")
HPARAM = typer.Option(None, "--hparam", metavar="NAME=VALUE", rich_help_panel=METHOD_PANEL,
                      help="any hyper-parameter the method declares, by its field name (the options above are the "
                      "common ones): e.g. --hparam kl_scale=0.5; repeatable")
RECIPE = typer.Option(None, "--recipe", rich_help_panel=SCHEDULE_PANEL, help="'paper': the method's paper recipe "
                      "(epochs, lr milestones, weight decay, lr, batch size, SWA, attack eps and step); options given "
                      "explicitly override it")
EPOCHS = typer.Option(None, "--epochs", rich_help_panel=SCHEDULE_PANEL, help="epochs to train; lr x0.1 at 50% and "
                      "75% of them \\[default with --recipe paper: the paper's]")
MILESTONES = typer.Option(None, "--milestones", metavar="E1,E2,...", rich_help_panel=SCHEDULE_PANEL,
                          help="epochs after which the lr drops x0.1, e.g. 100,150 \\[default: 50% and 75% of "
                          "--epochs; with --recipe paper the paper's, scaled to --epochs]")
MAX_STEPS = typer.Option(None, "--max-steps", rich_help_panel=SCHEDULE_PANEL, help="stop after this many optimiser "
                         "steps in all (a short run); last.safetensors is still written, best.safetensors once an "
                         "epoch has finished")
WEIGHT_DECAY = typer.Option(None, "--weight-decay", rich_help_panel=SCHEDULE_PANEL,
                            help="SGD weight decay \\[default: the method's paper value]")
BATCH_SIZE = typer.Option(None, "--batch-size", rich_help_panel=SCHEDULE_PANEL,
                          help="the GLOBAL batch of one optimiser step: under torchrun it is split over the processes "
                          "(timm's --batch-size is per process), so lr and schedule stay the paper's \\[default: 128]")
SWA_START = typer.Option(None, "--swa-start", rich_help_panel=SCHEDULE_PANEL, help="first epoch whose weights enter "
                         "a stochastic weight average, which is then evaluated and saved (BN statistics recomputed "
                         "on the real training images; not with --ema) \\[default: none; with "
                         "--recipe paper the paper's (akd2), scaled to --epochs]")
# The recipe of the generated-data papers (Gowal et al. 2020, Rebuffi et al. 2021, Wang et al. 2023): their images,
# the weight average, the schedule.
EXTRA_DATA = typer.Option(None, "--extra-data", metavar="SOURCE", rich_help_panel=DATA_PANEL,
                          help="generated images mixed into every batch: PATH.npz with arrays image/label (N x H x W x "
                          "C, as DeepMind's DDPM and the EDM sets) or x_train/y_train (N x C x H x W, rdist's layout), "
                          "hf://datasets/ORG/REPO[@REV]/PATH, https://.../NAME.npz (downloaded once), or parts "
                          "separated by commas; memory-mapped, checked before anything trains. An epoch stays one "
                          "pass over the real training images")
EXTRA_FRACTION = typer.Option(None, "--extra-fraction", metavar="F", rich_help_panel=DATA_PANEL,
                              help="the generated share of every batch: round(F x batch size) images \\[default: 0.7, "
                              "the recipes' value]")
EMA = typer.Option(None, "--ema", metavar="DECAY", rich_help_panel=SCHEDULE_PANEL, help="evaluate, select and save "
                   "an exponential moving average of the weights, updated every step with the warm-up decay "
                   "min(DECAY, (1+t)/(10+t)) of Gowal et al.'s code (the recipes: 0.995); not with --swa-start")
LR_SCHEDULE = typer.Option(None, "--schedule", rich_help_panel=SCHEDULE_PANEL, help="the lr schedule: step (x0.1 "
                           "after each milestone epoch, the papers') or cosine (to 0 over the run, every step, as the "
                           "generated-data recipes) \\[default: step]")
WARMUP_EPOCHS = typer.Option(None, "--warmup-epochs", rich_help_panel=SCHEDULE_PANEL, help="epochs of linear lr "
                             "warm-up from 0, step by step \\[default: 0]")
NESTEROV = typer.Option(None, "--nesterov/--no-nesterov", rich_help_panel=SCHEDULE_PANEL, help="Nesterov momentum "
                        "(the generated-data recipes) \\[default: off]")
LABEL_SMOOTHING = typer.Option(None, "--label-smoothing", rich_help_panel=SCHEDULE_PANEL, help="label smoothing of "
                               "the cross-entropy terms of the method's loss (not of its attack or KL terms; the "
                               "recipes: 0.1) \\[default: 0]")
SEED = typer.Option(None, "--seed", rich_help_panel=SCHEDULE_PANEL, help="seed of the initialisation, data order "
                    "and attacks \\[default: 0]")
OUT = typer.Option(None, "--out", "-o", rich_help_panel=RUN_PANEL, help="run directory for best/last.safetensors, "
                   "log.jsonl, checkpoint.pt and config.yaml; one that holds this same run (the same command again, as "
                   "a cluster's requeue runs it) is continued, another run there is refused "
                   "\\[default: runs/<method>-<arch>-<data>-<timestamp>]")
RESUME = typer.Option(None, "--resume", rich_help_panel=RUN_PANEL, help="continue the run in this directory from its "
                      "last finished epoch (other options may be left out; given ones must match the run)")
SEEDS = typer.Option(None, "--seeds", rich_help_panel=RUN_PANEL, help="several seeds, e.g. 0,1,2: one run directory "
                     "per seed (seed-N) under --out, a group directory that `rdist compare --runs` shows as one row, "
                     "mean +- std; the same command again continues the group")
DEVICE = typer.Option(None, "--device", rich_help_panel=DEVICE_PANEL, help="cpu, cuda, cuda:1 \\[default: cuda if "
                      "available]")
COMPILE = typer.Option(None, "--compile/--no-compile", rich_help_panel=DEVICE_PANEL, help="torch.compile the models "
                       "(faster long runs on CUDA); drops each epoch's last partial batch, so that no batch shape is "
                       "compiled twice")
SYNC_BN = typer.Option(None, "--sync-bn/--no-sync-bn", rich_help_panel=DEVICE_PANEL, help="under torchrun: BatchNorm "
                       "normalises with the statistics of the whole global batch (SyncBatchNorm; the same numbers as "
                       "one process with that batch, at one all-reduce per BN layer). Off: each process's BN sees its "
                       "own shard, as the official single-GPU codes' BN sees per-GPU batches, and the running "
                       "statistics are rank 0's \\[default: off]")
DIST_BACKEND = typer.Option(None, "--dist-backend", rich_help_panel=DEVICE_PANEL, help="under torchrun: nccl or gloo "
                            "\\[default: nccl on CUDA, gloo on the CPU]")
LOG = typer.Option(None, "--log", metavar="TRACKER", rich_help_panel=OUTPUT_PANEL, help="also report each step's loss "
                   "and each epoch's record to tensorboard (event files in RUN_DIR/tensorboard; pip install "
                   "'rdist\\[tensorboard]') or wandb (a W&B run; pip install 'rdist\\[wandb]'); repeatable. A resumed run "
                   "goes on in the same tracker run")
QUIET = typer.Option(False, "--quiet", "-q", rich_help_panel=OUTPUT_PANEL, help="no progress bar")
JSON_OUT = typer.Option(False, "--json", rich_help_panel=OUTPUT_PANEL, help="print the run's result (paths, best "
                        "epoch, per-epoch log) as JSON")


def parse_milestones(text: str | None) -> tuple[int, ...] | None:
    """(100, 150) from "100,150"; "" is no lr decay at all."""
    if text is None:
        return None
    parts = [p.strip() for p in str(text).split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise RdistError(f"cannot read --milestones '{text}': give epochs separated by commas, e.g. --milestones "
                         "100,150")
    return tuple(int(p) for p in parts)


# -- --config FILE.yaml: an experiment as a file -------------------------------------------------------------------

# Options a file cannot give: the file itself, and what prints something else than a run.
_NOT_IN_FILES = ("config", "list", "help")
_FILE_HPARAMS = "rdist.config_file.hparams"  # the ctx.meta key of the hyper-parameters a --config file gives


def _option_keys(command) -> dict[str, Any]:
    """key -> option of `command`, a key being an option's long name without its dashes and with _ for -
    (--batch-size: batch_size; --json: json)."""
    keys = {}
    for param in command.params:
        if getattr(param, "param_type_name", None) != "option":
            continue
        for flag in param.opts:
            if flag.startswith("--"):
                keys[flag[2:].replace("-", "_")] = param
    return keys


def _file_hparams(value: Any, where: str) -> dict[str, Any]:
    """The hyper-parameters of a file's `hparam:`, a mapping NAME: VALUE or a list of NAME=VALUE (null: none)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        for name, v in value.items():
            if v is not None and not isinstance(v, (int, float, bool)):
                raise typer.BadParameter(f"{where}: hparam {name} must be a number, true or false, got {v!r}")
        return dict(value)
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        try:
            return parse_hparams(value)
        except RdistError as exc:
            raise typer.BadParameter(f"{where}: {exc}") from None
    raise typer.BadParameter(f"{where}: hparam must be a mapping of hyper-parameters to values, e.g. "
                             "hparam: {kl_scale: 0.5}")


def read_config_file(ctx: typer.Context, value: Path | None) -> Path | None:
    """`--config FILE.yaml`: the file's values become the command's defaults, so that options given on the command
    line win. Its keys are the options' names, with _ or - (`batch_size` or `batch-size` for --batch-size); the
    hyper-parameters (--alpha, ..., hparam: {NAME: VALUE}) are merged with the command line's by name. An unknown
    key is refused in one line, with the closest names."""
    if value is None:
        return None
    import yaml

    where = str(value)
    try:
        data = yaml.safe_load(Path(value).expanduser().read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {where} ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise typer.BadParameter(f"{where} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise typer.BadParameter(f"{where} is not valid YAML{f' at line {mark.line + 1}' if mark else ''}: "
                                 f"{getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise typer.BadParameter(f"{where} must be a mapping of option names to values, e.g. `epochs: 10`")
    options = _option_keys(ctx.command)
    hyper = {name for method in list_methods() for name in method_class(method).defaults()}
    defaults, hparams, seen = {}, {}, {}
    for raw, item in data.items():
        key = str(raw).replace("-", "_")
        if key in seen:
            raise typer.BadParameter(f"{where} gives {key} twice (as {seen[key]} and {raw}); give it once")
        seen[key] = raw
        if key in _NOT_IN_FILES:
            raise typer.BadParameter(f"{where}: '{raw}' is an option of the command line only; remove it from the "
                                     "file")
        if key not in options:
            known = [k for k in options if k not in _NOT_IN_FILES]
            raise typer.BadParameter(f"{where}: unknown key '{raw}'{suggest(key, known)}; the keys are the options "
                                     f"of `{ctx.command_path}`")
        param = options[key]
        if key == "hparam" or param.name in hyper:  # merged with the command line's by name (`method_args`)
            given = _file_hparams(item if key == "hparam" else {param.name: item}, where)
            for name in set(given) & set(hparams):
                raise typer.BadParameter(f"{where} gives hyper-parameter {name} twice; give it once")
            hparams.update(given)
            continue
        if param.multiple and not isinstance(item, list):
            item = [item]
        elif not param.multiple and isinstance(item, list):
            item = ",".join(str(v) for v in item)  # milestones: [100, 150] is --milestones 100,150
        defaults[param.name] = item
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[_FILE_HPARAMS] = hparams
    return value


def config_option(command: str) -> Any:
    return typer.Option(None, "--config", "-c", metavar="FILE.yaml", is_eager=True, callback=read_config_file,
                        rich_help_panel=RUN_PANEL, help="take the options from a YAML file whose keys are their "
                        "names (batch_size: 64, hparam: {kl_scale: 0.5}); options given here win. A run directory's "
                        f"config.yaml is such a file: `{command} --config RUN/config.yaml --out OTHER` trains that "
                        "run again")


def method_args(ctx: typer.Context, hparam: list[str] | None, named: dict[str, float | None]) -> dict[str, Any]:
    """The hyper-parameters given: those of a --config file, overridden by name by the command line's (named
    options and --hparam, see `parse_hparams`)."""
    from_file = ctx.meta.get(_FILE_HPARAMS, {}) if ctx is not None else {}
    return {**from_file, **parse_hparams(hparam, named)}
