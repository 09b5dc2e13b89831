"""`rdist distill`: train a small robust student from a robust teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from rdist.cli import options as opt
from rdist.cli.common import MODEL_HELP, console, print_json, user_errors
from rdist.cli.training import run_training
from rdist.methods import NATURAL, list_aliases, list_methods, method_rows, methods_taking, role


@user_errors
def distill(
    ctx: typer.Context,
    method: str = typer.Option(None, "--method", "-m", rich_help_panel=opt.METHOD_PANEL,
                               help=f"distillation method: {', '.join(list_methods('distill'))}; as the papers say "
                               f"them: {', '.join(list_aliases('distill'))}"),
    student: str = typer.Option(None, "--student", "-s", rich_help_panel=opt.METHOD_PANEL,
                                help="student architecture: resnet18, mobilenetv2, preactresnet18, wrn-D-W, tinycnn, "
                                "..."),
    initial_weights: str = opt.INITIAL_WEIGHTS,
    alpha: float = opt.hparam_option("alpha"), beta: float = opt.hparam_option("beta"),
    tau: float = opt.hparam_option("tau"), kl_scale: float = opt.hparam_option("kl_scale"),
    warmup_epoch: float = opt.hparam_option("warmup_epoch"), igdm_alpha: float = opt.hparam_option("igdm_alpha"),
    igdm_beta: float = opt.hparam_option("igdm_beta"), igdm_gamma: float = opt.hparam_option("igdm_gamma"),
    hparam: list[str] = opt.HPARAM,
    teacher: list[str] = typer.Option(None, "--teacher", "-t", metavar="[ROLE=]MODEL",
                                      rich_help_panel=opt.TEACHERS_PANEL,
                                      help=f"the robust teacher: {MODEL_HELP}; a RobustBench name is pulled on first "
                                      "use. ROLE=MODEL names the teacher of another role a method declares "
                                      f"(natural=MODEL is {role(NATURAL).option}); repeatable "
                                      "\\[default: the method's paper teacher for --data, see --list]"),
    natural_teacher: str = typer.Option(None, role(NATURAL).option, rich_help_panel=opt.TEACHERS_PANEL,
                                        help=f"the {role(NATURAL).adjective} teacher of "
                                        f"{', '.join(methods_taking(NATURAL))} "
                                        f"({role(NATURAL).how_to_get.format(data='DATA')}): {MODEL_HELP} "
                                        "\\[default: the method's paper choice for --data, see --list]"),
    companion: list[str] = opt.COMPANION,
    data: str = opt.DATA, data_dir: str = opt.DATA_DIR, val_size: float = opt.VAL_SIZE,
    extra_data: str = opt.EXTRA_DATA, extra_fraction: float = opt.EXTRA_FRACTION,
    select_on: str = opt.SELECT_ON, eval_every: int = opt.EVAL_EVERY, eval_n: int = opt.EVAL_N,
    recipe: str = opt.RECIPE, epochs: int = opt.EPOCHS, milestones: str = opt.MILESTONES,
    max_steps: int = opt.MAX_STEPS, lr: float = opt.lr_option("distill"), weight_decay: float = opt.WEIGHT_DECAY,
    batch_size: int = opt.BATCH_SIZE, swa_start: int = opt.SWA_START, ema: float = opt.EMA,
    schedule: str = opt.LR_SCHEDULE, warmup_epochs: int = opt.WARMUP_EPOCHS, nesterov: bool = opt.NESTEROV,
    label_smoothing: float = opt.LABEL_SMOOTHING, seed: int = opt.SEED,
    eps: str = opt.attack_option("--eps", "distill"), step_size: str = opt.attack_option("--step-size", "distill"),
    steps: int = opt.attack_option("--steps", "distill"), norm: str = opt.norm_option("distill"),
    out: str = opt.OUT, resume: Path = opt.RESUME, config: Path = opt.config_option("rdist distill"),
    seeds: str = opt.SEEDS,
    device: str = opt.DEVICE, compile: bool = opt.COMPILE, sync_bn: bool = opt.SYNC_BN,
    dist_backend: str = opt.DIST_BACKEND,
    log: list[str] = opt.LOG, quiet: bool = opt.QUIET, json_out: bool = opt.JSON_OUT,
    list_: bool = typer.Option(False, "--list", rich_help_panel=opt.OUTPUT_PANEL,
                               help="list the methods (paper, inner attack, outer loss, default teacher and recipe for "
                               "--data, links to the paper and the official code) and exit"),
) -> None:
    """Distil a robust student from a robust teacher with any method of the spec.

    What is left out is the method's paper's: --data cifar10, its recipe (unless --epochs or --recipe is
    given), its teacher from RobustBench; the header line before training says which. Explicit options win.

    Example: rdist distill --method iad --student mobilenetv2
    """
    if list_:
        print_method_table(data or "cifar10", json_out)
        return
    method_args = opt.method_args(ctx, hparam, {"alpha": alpha, "beta": beta, "tau": tau, "kl_scale": kl_scale,
                                                "warmup_epoch": warmup_epoch, "igdm_alpha": igdm_alpha,
                                                "igdm_beta": igdm_beta, "igdm_gamma": igdm_gamma})
    run_training(kind="distill", resume=resume, quiet=quiet, json_out=json_out, log=log, method=method, arch=student,
                 eps=eps, step_size=step_size, method_args=method_args, milestones=milestones,
                 teachers=opt.parse_teachers(teacher, natural_teacher) or None, initial_weights=initial_weights,
                 companions=opt.parse_companions(companion) or None,
                 data=data, data_dir=data_dir, val_size=val_size, epochs=epochs, max_steps=max_steps, recipe=recipe,
                 lr=lr, weight_decay=weight_decay, batch_size=batch_size, swa_start=swa_start, attack_steps=steps,
                 norm=norm,
                 out=out, seed=seed, seeds=seeds, device=device, compile=compile, sync_bn=sync_bn,
                 dist_backend=dist_backend, select_on=select_on, eval_every=eval_every, eval_n=eval_n,
                 extra_data=extra_data, extra_fraction=extra_fraction, ema=ema, lr_schedule=schedule,
                 warmup_epochs=warmup_epochs, nesterov=nesterov, label_smoothing=label_smoothing)


def print_method_table(data: str, json_out: bool) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    rows = method_rows(data)
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"distillation methods, with their papers' teacher and recipe on {data}", box=box.SIMPLE,
                  pad_edge=False)
    for column in ("method", "paper", "inner attack", "outer loss", "default teacher", "recipe"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        name = row["method"] + (f" ({row['aliases']})" if row["aliases"] else "")
        table.add_row(name, row["paper"], row["attack"], row["loss"], _teacher_cell(row), row["recipe"])
    # Six columns of formulas, at their natural width (about 230 characters): a narrow terminal wraps the lines,
    # which reads better than columns squeezed to a few letters. The links follow, one method a line.
    out = Console(width=1000, soft_wrap=True, highlight=False)
    out.print(table)
    for row in rows:
        if row["url"] or row["code"]:
            out.print(f"{row['method']}: paper {row['url'] or '-'}  code {row['code'] or '- (none published)'}")
    for row in rows:
        if row["note"]:
            out.print(f"{row['method']}: note: {row['note']}")


def _teacher_cell(row: dict) -> str:
    """The default teacher column: the paper's teacher, "none" for a method that trains its own (PeerAiD's peer),
    or a request for one."""
    if row["teacher"]:
        return row["teacher"]
    if not row["teachers"]:
        trains = " and ".join(row["companions"])
        return f"none (trains a {trains})" if trains else "none"
    return "- (give --teacher)"
