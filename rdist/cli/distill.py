"""`rdist distill`: train a small robust student from a robust teacher."""

from __future__ import annotations

from pathlib import Path

import typer

from rdist.cli import training as opt
from rdist.cli.common import user_errors
from rdist.methods import list_methods


@user_errors
def distill(
    method: str = typer.Option(None, "--method", "-m",
                               help=f"distillation method: {', '.join(list_methods('distill'))}"),
    student: str = typer.Option(None, "--student", "-s", help="student architecture: resnet18, mobilenetv2, "
                                "preactresnet18, wrn-D-W, tinycnn, ..."),
    teacher: str = typer.Option(None, "--teacher", "-t", help="the robust teacher: an .safetensors artifact, "
                                "zoo:NAME, or a RobustBench name (`rdist teacher list`), pulled on first use"),
    natural_teacher: str = typer.Option(None, "--natural-teacher", help="a naturally trained teacher "
                                        "(akd2, iad-ii), e.g. from `rdist teacher train --method natural`"),
    alpha: float = typer.Option(None, "--alpha", help=opt.hparam_help("weight of the distillation term", "alpha")),
    beta: float = typer.Option(None, "--beta", help=opt.hparam_help("exponent of IAD's trust weight", "beta")),
    tau: float = typer.Option(None, "--tau", help=opt.hparam_help("distillation temperature", "tau")),
    kl_scale: float = typer.Option(None, "--kl-scale", help=opt.hparam_help(
        "scale of the KL terms (KLbm units); with --recipe paper adaad takes 1 on cifar100", "kl_scale")),
    warmup_epoch: float = typer.Option(None, "--warmup-epoch", help=opt.hparam_help("epochs of plain distillation "
                                       "before IAD's introspection starts", "warmup_epoch")),
    igdm_alpha: float = typer.Option(None, "--igdm-alpha", help=opt.hparam_help("weight of the IGDM term (+igdm)",
                                                                                "igdm_alpha")),
    igdm_beta: float = typer.Option(None, "--igdm-beta", help=opt.hparam_help("IGDM forward probe x + b d",
                                                                              "igdm_beta")),
    igdm_gamma: float = typer.Option(None, "--igdm-gamma", help=opt.hparam_help("IGDM backward probe x - g d",
                                                                                "igdm_gamma")),
    data: str = opt.DATA, epochs: int = opt.EPOCHS, max_steps: int = opt.MAX_STEPS, recipe: str = opt.RECIPE,
    lr: float = opt.LR, weight_decay: float = opt.WEIGHT_DECAY, batch_size: int = opt.BATCH_SIZE,
    eps: str = opt.EPS, step_size: str = opt.STEP_SIZE, steps: int = opt.STEPS, out: str = opt.OUT,
    resume: Path = opt.RESUME, seed: int = opt.SEED, device: str = opt.DEVICE, compile: bool = opt.COMPILE,
    sync_bn: bool = opt.SYNC_BN, dist_backend: str = opt.DIST_BACKEND,
    select_on: str = opt.SELECT_ON, eval_every: int = opt.EVAL_EVERY, eval_n: int = opt.EVAL_N,
    quiet: bool = opt.QUIET, json_out: bool = opt.JSON_OUT,
) -> None:
    """Distil a robust student from a robust teacher with any method of the spec.

    Example: rdist distill --method rslad --student resnet18 --teacher teacher.safetensors --recipe paper
    """
    hparams = {"alpha": alpha, "beta": beta, "tau": tau, "kl_scale": kl_scale, "warmup_epoch": warmup_epoch,
               "igdm_alpha": igdm_alpha, "igdm_beta": igdm_beta, "igdm_gamma": igdm_gamma}
    opt.run_training(kind="distill", resume=resume, quiet=quiet, json_out=json_out, method=method, arch=student,
                     eps=eps, step_size=step_size, hparams=hparams, teacher=teacher, natural_teacher=natural_teacher,
                     data=data, epochs=epochs, max_steps=max_steps, recipe=recipe, lr=lr, weight_decay=weight_decay,
                     batch_size=batch_size, attack_steps=steps, out=out, seed=seed, device=device, compile=compile,
                     sync_bn=sync_bn, dist_backend=dist_backend, select_on=select_on, eval_every=eval_every,
                     eval_n=eval_n)
