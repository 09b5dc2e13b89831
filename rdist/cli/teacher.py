"""`rdist teacher pull|train|import|list`: get a robust teacher by name, train one, or convert one."""

from __future__ import annotations

from pathlib import Path

import typer

from rdist.cli import options
from rdist.cli.common import console, err_console, print_json, user_errors
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
    err_console.print(f"{name}: {meta['arch']['name']}, {data}; RobustBench Linf eps {board['eps']}: "
                      f"clean {board['clean']:.2f}%, AutoAttack {board['autoattack']:.2f}%", highlight=False)
    console.print(str(path), highlight=False, soft_wrap=True)


@app.command("list")
@user_errors
def list_(
    data: str = typer.Option(None, "--data", "-d", help="only the teachers for cifar10 or cifar100"),
    json_out: bool = typer.Option(False, "--json", help="print the catalogue as JSON"),
) -> None:
    """List the RobustBench Linf teachers rdist can pull, with their leaderboard accuracies."""
    from rich import box
    from rich.table import Table

    from rdist.teachers.catalogue import DATASET_LABELS, TEACHERS
    from rdist.teachers.robustbench import artifact_path
    from rdist.utils import unknown

    if data is not None and data not in DATASET_LABELS:
        raise unknown("teacher dataset", data, DATASET_LABELS)
    entries = [e for e in TEACHERS.values() if data in (None, e.dataset)]
    if json_out:
        print_json([{**e.leaderboard(), "arch": e.arch, "paper": e.paper, "pulled": artifact_path(e).is_file()}
                    for e in entries])
        return
    other_eps = sorted({e.eps for e in entries} - {"8/255"})
    table = Table(title="RobustBench Linf teachers: leaderboard accuracy (%), full test set, eps 8/255",
                  caption=f"* evaluated at eps {', '.join(other_eps)}" if other_eps else None, box=box.SIMPLE,
                  pad_edge=False)
    for column in ("name", "data", "arch", "clean", "AA", "pulled"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("clean", "AA") else "left")
    for e in entries:
        marked = "*" if e.eps != "8/255" else ""
        table.add_row(e.name, e.dataset, e.arch, f"{e.clean:.2f}", f"{e.autoattack:.2f}{marked}",
                      "yes" if artifact_path(e).is_file() else "")
    console.print(table)


@app.command("train", help=f"Train a teacher ({TEACHER_METHODS}); its best.safetensors is ready for --teacher.\n\n"
             "Example: rdist teacher train --method trades --arch wrn-34-10 --recipe paper")
@user_errors
def train(
    method: str = typer.Option(None, "--method", "-m", help=f"teacher training method: {TEACHER_METHODS}"),
    arch: str = typer.Option(None, "--arch", help="architecture: wrn-34-10, resnet18, preactresnet18, smallcnn, ..."),
    beta: float = typer.Option(None, "--beta", help=options.hparam_help("beta", "teacher")),
    hparam: list[str] = options.HPARAM, data: str = options.DATA, epochs: int = options.EPOCHS,
    max_steps: int = options.MAX_STEPS,
    recipe: str = options.RECIPE, lr: float = options.lr_option("teacher"),
    weight_decay: float = options.WEIGHT_DECAY,
    batch_size: int = options.BATCH_SIZE, eps: str = options.attack_option("--eps", "teacher"),
    step_size: str = options.attack_option("--step-size", "teacher"),
    steps: int = options.attack_option("--steps", "teacher"), out: str = options.OUT,
    resume: Path = options.RESUME, seed: int = options.SEED,
    seeds: str = options.SEEDS,
    device: str = options.DEVICE, compile: bool = options.COMPILE,
    sync_bn: bool = options.SYNC_BN, dist_backend: str = options.DIST_BACKEND, select_on: str = options.SELECT_ON,
    eval_every: int = options.EVAL_EVERY, eval_n: int = options.EVAL_N, quiet: bool = options.QUIET,
    json_out: bool = options.JSON_OUT,
) -> None:
    run_training(kind="teacher", resume=resume, quiet=quiet, json_out=json_out, method=method, arch=arch,
                 eps=eps, step_size=step_size, method_args=options.parse_hparams(hparam, {"beta": beta}), data=data,
                 epochs=epochs,
                 max_steps=max_steps, recipe=recipe, lr=lr, weight_decay=weight_decay,
                 batch_size=batch_size, attack_steps=steps, out=out, seed=seed, seeds=seeds, device=device,
                 compile=compile, sync_bn=sync_bn, dist_backend=dist_backend,
                 select_on=select_on, eval_every=eval_every, eval_n=eval_n)


@app.command("import")
@user_errors
def import_(
    checkpoint: Path = typer.Argument(..., help="PyTorch checkpoint (.pt/.pth) or .safetensors file holding a "
                                      "state dict"),
    arch: str = typer.Option(..., "--arch", help="architecture of the checkpoint, e.g. resnet18, wrn-34-10"),
    dataset: str = typer.Option(..., "--dataset", help="dataset it was trained on: cifar10, cifar100, svhn, digits"),
    output: Path = typer.Option(..., "--output", "-o", help="where to write the .safetensors artifact"),
    num_classes: int = typer.Option(None, min=1, help="number of classes \\[default: the dataset's]"),
    in_channels: int = typer.Option(None, min=1, help="input channels \\[default: the dataset's]"),
    mean: str = typer.Option(None, help="per-channel mean the model normalises with, e.g. 0.4914,0.4822,0.4465"),
    std: str = typer.Option(None, help="per-channel std the model normalises with, e.g. 0.2471,0.2435,0.2616"),
    json_out: bool = typer.Option(False, "--json", help="print the artifact's metadata as JSON"),
) -> None:
    """Convert a foreign PyTorch checkpoint into a self-describing rdist artifact (safe: weights only)."""
    from rdist.teachers.convert import import_checkpoint

    meta = import_checkpoint(checkpoint, arch=arch, dataset=dataset, output=output, num_classes=num_classes,
                             in_channels=in_channels, mean=_floats(mean, "--mean"), std=_floats(std, "--std"))
    if json_out:
        print_json(meta)
    else:
        console.print(f"wrote {output} ({meta['arch']['name']}, {meta['arch']['num_classes']} classes, "
                      f"{meta['dataset']})")


def _floats(text: str | None, option: str) -> list[float] | None:
    if not text:
        return None
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise RdistError(f"{option} takes comma-separated numbers, one per channel, e.g. 0.4914,0.4822,0.4465; "
                         f"got '{text}'") from None
