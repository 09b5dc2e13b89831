"""config.yaml: a run's whole configuration, resolved, written into its run directory as the run starts.

Every default is filled in and the recipe spelled out (epochs, milestones, lr and its schedule, weight decay, batch
size, the weight average, label smoothing, the generated data and its share, the attack), the method's
hyper-parameters with their values, and the held-out split; its keys are the options of the
command that trains the run (`rdist distill` or `rdist teacher train`; `batch_size` for `--batch-size`), so that

    rdist distill --config runs/X/config.yaml --out runs/Y

trains the same run again (timm's args.yaml, read back by its `-c`). Values a machine decides stay unset (null):
the device, the distributed backend. Where the run writes and how it reports (--out, --resume, --log, --quiet)
is no part of it.
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdist.files import atomic_path
from rdist.runs import CONFIG
from rdist.utils import format_eps, parse_eps

if TYPE_CHECKING:
    from rdist.engine.build import Run


def _eps_text(value: float) -> str | float:
    """8/255 where that reads back as exactly the same number, else the number itself."""
    text = format_eps(value)
    return text if "/" in text and parse_eps(text) == value else value


def resolved_options(run: Run) -> dict[str, Any]:
    """The run's configuration as the options of the command that trains it name it (see the module docstring)."""
    c, s, m = run.config, run.schedule, run.method
    distill = m.kind == "distill"
    options: dict[str, Any] = {"method": m.name, ("student" if distill else "arch"): c.student}
    if distill:  # every role as ROLE=MODEL, which --teacher takes for any role
        options["teacher"] = [f"{name}={spec}" for name, spec in c.teachers.items()]
    if run.companion_plans:  # as --companion ROLE=ARCH|MODEL takes them
        options["companion"] = [f"{role}={plan.model}" for role, plan in run.companion_plans.items()]
    options.update({
        "initial_weights": c.initial_weights,
        "hparam": m.values(),
        "data": c.data, "data_dir": c.data_dir, "val_size": c.val_size, "select_on": c.select_on,
        "eval_every": c.eval_every, "eval_n": len(run.eval_y),
        "recipe": c.recipe, "epochs": s.epochs, "milestones": list(s.milestones), "lr": s.lr,
        "weight_decay": s.weight_decay, "batch_size": s.batch_size, "swa_start": s.swa_start, "ema": s.ema,
        "schedule": s.lr_schedule, "warmup_epochs": s.warmup_epochs, "nesterov": s.nesterov,
        "label_smoothing": s.label_smoothing, "extra_data": c.extra_data, "extra_fraction": c.extra_fraction,
        "max_steps": c.max_steps, "seed": c.seed,
        "eps": _eps_text(m.eps), "step_size": _eps_text(m.step_size), "steps": m.attack_steps,
        "norm": m.norm,
        "device": c.device, "compile": c.compile, "sync_bn": c.sync_bn, "dist_backend": c.dist_backend,
    })
    return options


def write_config_file(run: Run) -> Path:
    """RUN_DIR/config.yaml, written atomically (see the module docstring)."""
    import yaml

    command = "rdist distill" if run.method.kind == "distill" else "rdist teacher train"
    header = (f"# The resolved configuration of this run (rdist {version('rdist')}). Train it again with\n"
              f"#   {command} --config {CONFIG} --out OTHER_DIR\n"
              "# Options given on that command line win over these values; null: the default of the machine.\n")
    path = run.run_dir / CONFIG
    with atomic_path(path) as tmp:
        tmp.write_text(header + yaml.safe_dump(resolved_options(run), sort_keys=False, default_flow_style=None, width=1000))
    return path
