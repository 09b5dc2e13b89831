"""`rdist teacher pull|train|import|list`: get a robust teacher by name, train one, or convert one."""

from __future__ import annotations

from pathlib import Path

import typer

from rdist.cli import options
from rdist.cli.common import click_errors, console, data_option, err_console, print_json, user_errors
from rdist.cli.training import run_training
from rdist.errors import RdistError
from rdist.methods import list_methods

TEACHER_METHODS = ", ".join(list_methods("teacher"))

app = typer.Typer(help="Get, train or convert the robust teacher a student learns from.", no_args_is_help=True)


@app.command("pull")
@user_errors
def pull(
    name: str = typer.Argument(..., help="RobustBench model ID, e.g. Zhang2019Theoretically (`rdist teacher list`)"),
    data: str = typer.Option("cifar10", "--data", "-d", help="the teacher's dataset: cifar10 or cifar100"),
    json_out: bool = typer.Option(False, "--json", help="print the artifact's path and metadata as JSON"),
) -> None:
    """Fetch a RobustBench teacher once, convert it (weights only, never unpickled code), print its artifact path.

    Example: rdist teacher pull Chen2021LTD_WRN34_10 --data cifar100
    """
    from rdist.artifact import read_metadata
    from rdist.teachers.robustbench import pull_teacher

    path = pull_teacher(name, data, log=lambda message: err_console.print(message, highlight=False, soft_wrap=True))
    meta = read_metadata(path)
    if json_out:
        print_json({"path": str(path), **meta})
        return
    board = meta["leaderboard"]
    numbers = (f"RobustBench Linf eps {board['eps']}: clean {board['clean']:.2f}%, AutoAttack "
               f"{board['autoattack']:.2f}%" if board.get("clean") is not None else "RobustBench published no numbers")
    err_console.print(f"{name}: {meta['arch']['name']}, {data}; {numbers}", highlight=False)
    console.print(str(path), highlight=False, soft_wrap=True)


@app.command("list")
@user_errors
def list_(
    data: str = typer.Option(None, "--data", "-d", help="only the teachers for cifar10 or cifar100"),
    sort: str = typer.Option("autoattack", "--sort", help="order: autoattack or clean (highest first), params "
                             "(smallest first) or name"),
    all_: bool = typer.Option(False, "--all", help="also RobustBench's models rdist cannot build, with the reason"),
    json_out: bool = typer.Option(False, "--json", help="print the catalogue as JSON"),
) -> None:
    """List RobustBench's Linf teachers rdist can pull: architecture, size, leaderboard accuracies.

    Example: rdist teacher list --data cifar100 --sort params
    """
    from rich.console import Console

    from rdist.teachers.catalogue import DATASET_LABELS, ROBUSTBENCH, SOURCE, TEACHERS
    from rdist.teachers.robustbench import artifact_path
    from rdist.utils import unknown

    if data is not None and data not in DATASET_LABELS:
        raise unknown("teacher dataset", data, DATASET_LABELS)
    if sort not in _SORTS:
        raise unknown("--sort order", sort, _SORTS)
    # TEACHERS as well: an entry added at run time (a test's) is listed too.
    catalogue = {**ROBUSTBENCH, **TEACHERS} if all_ else TEACHERS
    entries = sorted((e for e in catalogue.values() if data in (None, e.dataset)), key=_SORTS[sort])
    if json_out:
        print_json([{**e.leaderboard(), "arch": e.arch, "params": e.params, "buildable": e.buildable,
                     "reason": e.reason, "pulled": e.buildable and artifact_path(e).is_file(), "paper": e.paper,
                     "venue": e.venue, "architecture": e.architecture, "additional_data": e.additional_data,
                     "external": e.external, "unreliable": e.unreliable, "footnote": e.footnote}
                    for e in entries])
        return
    buildable = [e for e in entries if e.buildable]
    refused = [e for e in entries if not e.buildable]
    title = "RobustBench Linf teachers: leaderboard accuracy (%), full test set, eps 8/255"
    tables = [_teacher_table(title, buildable, data, artifact_path, SOURCE)]
    if all_:
        tables.append(_teacher_table(f"RobustBench models rdist cannot build ({len(refused)})", refused, data,
                                     artifact_path, SOURCE))
    # Piped (not a terminal), a table keeps its natural width instead of folding at 80 columns.
    out = console if console.is_terminal else Console(width=1000)
    for table in tables:
        out.print(table)


def _teacher_table(title: str, entries: list, data: str | None, artifact_path, source: dict):
    """One table of catalogue entries: the buildable ones with their architecture, or the others with the
    reason rdist cannot build them."""
    from rich import box
    from rich.table import Table

    refused = bool(entries) and not entries[0].buildable
    other_eps = sorted({e.eps for e in entries} - {"8/255"})
    notes = [f"* evaluated at eps {', '.join(other_eps)}"] if other_eps else []
    if any(e.unreliable for e in entries):
        notes.append("? RobustBench marks the evaluation unreliable")
    if any(e.clean is None for e in entries):
        notes.append("- RobustBench published no numbers")
    notes.append(f"RobustBench model_info {source['model_info_commit'][:12]}, robustbench "
                 f"{source['robustbench_version']}")
    table = Table(title=title, caption="; ".join(notes), box=box.SIMPLE, pad_edge=False)
    columns = ["name", *(["data"] if data is None else []), *([] if refused else ["arch"]), "params", "clean",
               "AA", *(["why rdist cannot build it"] if refused else ["pulled"])]
    # Numbers keep their width; in a narrow terminal the names and reasons fold instead.
    for column in columns:
        number = column in ("params", "clean", "AA")
        table.add_column(column, no_wrap=number, justify="right" if number else "left", overflow="fold",
                         min_width={"params": 6, "clean": 5, "AA": 7}.get(column))
    for e in entries:
        marks = ("*" if e.eps != "8/255" else "") + ("?" if e.unreliable else "")
        last = e.reason if refused else "yes" if artifact_path(e).is_file() else ""
        table.add_row(e.name, *([e.dataset] if data is None else []), *([] if refused else [e.arch]),
                      _millions(e.params), "-" if e.clean is None else f"{e.clean:.2f}",
                      "-" if e.autoattack is None else f"{e.autoattack:.2f}{marks}", last)
    return table


def _millions(params: int | None) -> str:
    return "-" if params is None else f"{params / 1e6:.1f}M"


# Sort keys; a missing number sorts last.
_SORTS = {
    "autoattack": lambda e: (e.autoattack is None, -(e.autoattack or 0), e.name, e.dataset),
    "clean": lambda e: (e.clean is None, -(e.clean or 0), e.name, e.dataset),
    "params": lambda e: (e.params is None, e.params or 0, e.name, e.dataset),
    "name": lambda e: (e.name.lower(), e.dataset),
}


@app.command("train", help=f"Train a teacher ({TEACHER_METHODS}); its best.safetensors is ready for --teacher.\n\n"
             "Example: rdist teacher train --method trades --arch wrn-34-10 --recipe paper")
@user_errors
def train(
    ctx: typer.Context,
    method: str = typer.Option(None, "--method", "-m", help=f"teacher training method: {TEACHER_METHODS}",
                               rich_help_panel=options.METHOD_PANEL),
    arch: str = typer.Option(None, "--arch", help="architecture: wrn-34-10, resnet18, preactresnet18, smallcnn, ...",
                             rich_help_panel=options.METHOD_PANEL),
    initial_weights: str = options.INITIAL_WEIGHTS, companion: list[str] = options.COMPANION,
    beta: float = options.hparam_option("beta", "teacher"), hparam: list[str] = options.HPARAM,
    data: str = options.DATA, data_dir: str = options.DATA_DIR, val_size: float = options.VAL_SIZE,
    extra_data: str = options.EXTRA_DATA, extra_fraction: float = options.EXTRA_FRACTION,
    select_on: str = options.SELECT_ON, eval_every: int = options.EVAL_EVERY, eval_n: int = options.EVAL_N,
    recipe: str = options.RECIPE, epochs: int = options.EPOCHS, milestones: str = options.MILESTONES,
    max_steps: int = options.MAX_STEPS, lr: float = options.lr_option("teacher"),
    weight_decay: float = options.WEIGHT_DECAY, batch_size: int = options.BATCH_SIZE,
    swa_start: int = options.SWA_START, ema: float = options.EMA, schedule: str = options.LR_SCHEDULE,
    warmup_epochs: int = options.WARMUP_EPOCHS, nesterov: bool = options.NESTEROV,
    label_smoothing: float = options.LABEL_SMOOTHING, seed: int = options.SEED,
    eps: str = options.attack_option("--eps", "teacher"), step_size: str = options.attack_option("--step-size", "teacher"),
    steps: int = options.attack_option("--steps", "teacher"), norm: str = options.norm_option("teacher"),
    out: str = options.OUT, resume: Path = options.RESUME, config: Path = options.config_option("rdist teacher train"),
    seeds: str = options.SEEDS,
    device: str = options.DEVICE, compile: bool = options.COMPILE, sync_bn: bool = options.SYNC_BN,
    dist_backend: str = options.DIST_BACKEND,
    log: list[str] = options.LOG, quiet: bool = options.QUIET, json_out: bool = options.JSON_OUT,
) -> None:
    run_training(kind="teacher", resume=resume, quiet=quiet, json_out=json_out, log=log, method=method, arch=arch,
                 eps=eps, step_size=step_size, method_args=options.method_args(ctx, hparam, {"beta": beta}),
                 milestones=milestones, initial_weights=initial_weights,
                 companions=options.parse_companions(companion) or None, data=data, data_dir=data_dir,
                 val_size=val_size, epochs=epochs, max_steps=max_steps, recipe=recipe, lr=lr, weight_decay=weight_decay,
                 batch_size=batch_size, swa_start=swa_start, attack_steps=steps, norm=norm, out=out, seed=seed, seeds=seeds,
                 device=device, compile=compile, sync_bn=sync_bn, dist_backend=dist_backend, select_on=select_on,
                 eval_every=eval_every, eval_n=eval_n, extra_data=extra_data, extra_fraction=extra_fraction, ema=ema,
                 lr_schedule=schedule, warmup_epochs=warmup_epochs, nesterov=nesterov, label_smoothing=label_smoothing)


@app.command("import")
@user_errors
def import_(
    checkpoint: Path = typer.Argument(..., help="PyTorch checkpoint (.pt/.pth) or .safetensors file holding a "
                                      "state dict"),
    arch: str = typer.Option(..., "--arch", help="architecture of the checkpoint, e.g. resnet18, wrn-34-10"),
    data: str = data_option(None, what="dataset it was trained on: "),
    out: Path = typer.Option(None, "--out", "-o", help="where to write the .safetensors artifact (required)"),
    num_classes: int = typer.Option(None, min=1, help="number of classes \\[default: the dataset's]"),
    in_channels: int = typer.Option(None, min=1, help="input channels \\[default: the dataset's]"),
    mean: str = typer.Option(None, help="per-channel mean the model normalises with, e.g. 0.4914,0.4822,0.4465"),
    std: str = typer.Option(None, help="per-channel std the model normalises with, e.g. 0.2471,0.2435,0.2616"),
    json_out: bool = typer.Option(False, "--json", help="print the artifact's metadata as JSON"),
    # The spellings of earlier versions, kept working but out of the help: every other command says --data, --out.
    dataset: str = typer.Option(None, "--dataset", hidden=True),
    output: Path = typer.Option(None, "--output", hidden=True),
) -> None:
    """Convert a foreign PyTorch checkpoint into a self-describing rdist artifact (safe: weights only).

    Example: rdist teacher import model.pt --arch resnet18 --data cifar10 --out resnet18.safetensors
    """
    from rdist.teachers.convert import import_checkpoint

    data, out = _one_of(data, dataset, "--data", "--dataset"), _one_of(out, output, "--out", "--output")
    meta = import_checkpoint(checkpoint, arch=arch, dataset=data, output=out, num_classes=num_classes,
                             in_channels=in_channels, mean=_floats(mean, "--mean"), std=_floats(std, "--std"))
    if json_out:
        print_json(meta)
    else:
        console.print(f"wrote {out} ({meta['arch']['name']}, {meta['arch']['num_classes']} classes, "
                      f"{meta['dataset']})")


def _one_of(value, alias, option: str, old: str):
    """The value of `option` or of its old spelling `old`; one of them is required."""
    if value is not None and alias is not None and value != alias:
        raise RdistError(f"{option} and {old} are the same option: give it once")
    if value is None and alias is None:
        raise click_errors.UsageError(f"Missing option '{option}'.")
    return value if value is not None else alias


def _floats(text: str | None, option: str) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise RdistError(f"{option} takes comma-separated numbers, one per channel, e.g. 0.4914,0.4822,0.4465; "
                         f"got '{text}'") from None
