"""How a training run writes its run directory: where a new run goes, the checks before it starts, the hold
while it writes, and its self-describing artifacts (how they were made and how they did). What a run directory
holds, and how every reader (`--resume`, `rdist compare --runs`, the seed groups) finds and reads it, is
`rdist.runs`, which needs nothing of the engine.
"""

from __future__ import annotations

import contextlib
import re
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from torch import nn

from rdist.artifact import report_key, save_model
from rdist.attacks import EvalResult
from rdist.data import npz_file
from rdist.engine.config import TrainConfig
from rdist.errors import RdistError
from rdist.files import check_output, hold_directory, sweep_temp_files
from rdist.methods import method_class, role
from rdist.runs import FILES, RunDirectory, companion_file
from rdist.utils import format_eps

if TYPE_CHECKING:
    from rdist.engine.build import Run

EVAL_ATTACKS = ["clean", "pgd20"]


def default_run_dir(config: TrainConfig) -> RunDirectory:
    """runs/<method>-<student>-<data>-<timestamp>, where a run goes without --out."""
    data = Path(config.data[4:]).stem if config.data.startswith("npz:") else config.data
    name = re.sub(r"[^A-Za-z0-9.+_-]+", "_", f"{config.method}-{config.student}-{data}")
    return RunDirectory(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def check_run_dir(config: TrainConfig) -> None:
    """Refuse, before anything is built, a run directory that cannot be written or whose files would
    overwrite one of the run's inputs (a teacher saved as best.safetensors there, say)."""
    inputs = [*((f"the {role(name).noun}", spec) for name, spec in config.teachers.items()),
              *((f"companion {name}'s starting model", spec) for name, spec in config.companions.items()),
              ("the dataset", npz_file(config.data))]
    companions = [companion_file(name) for name in method_class(config.method).companions]
    check_output(config.resume or config.out or "runs", "--resume" if config.resume else "--out", directory=True,
                 files=(*FILES, *companions), inputs=inputs)


@contextlib.contextmanager
def hold_run_dir(run: Run) -> Iterator[None]:
    """The run directory, held for this run alone while the block runs (`files.hold_directory`), with what atomic
    writes of a killed run left there swept; refused at once, in one line naming the holder, when another process
    holds it.

    Under torchrun rank 0 holds it for the job and the other ranks never touch it: rank 0's verdict reaches every
    rank (`Group.share`) before anything else is exchanged, so that all of them stop together rather than wait
    for a rank that left.
    """
    with contextlib.ExitStack() as stack:
        refusal = None
        if run.ranks.is_main:
            resuming = run.config.resume is not None
            fix = "wait for it to end, then resume it" if resuming else "wait for it or pass another --out"
            try:
                stack.enter_context(hold_directory(run.run_dir, fix))
                sweep_temp_files(run.run_dir)
            except RdistError as exc:
                refusal = str(exc)
        refusal = run.parallel.group.share(refusal)
        if refusal is not None:
            raise RdistError(refusal)
        yield


def _arch_name(model: nn.Module) -> str | None:
    return getattr(model, "rdist_meta", {}).get("arch", {}).get("name")


def eval_report(run: Run, result: EvalResult, epoch: int) -> dict[str, Any]:
    """A robustness report in the shape `rdist attack` records, for the images checkpoints are selected on."""
    split = run.eval_split
    dataset = run.config.data if split == "test" else f"{run.config.data}:val"
    return {"dataset": dataset, "split": split, "attacks": list(EVAL_ATTACKS), **result.to_dict(), "epoch": epoch}


def _provenance(run: Run, epoch: int, global_step: int) -> dict[str, Any]:
    """How the run made its models: what every artifact it writes records."""
    c, s = run.config, run.schedule
    # The artifact format's keys: each role's own (`Role.field`) and <key>_arch.
    teachers = {}
    for role_name, teacher in run.teachers.items():
        key = role(role_name).field
        teachers[key], teachers[f"{key}_arch"] = c.teachers[role_name], _arch_name(teacher)
    return {
        "method": run.method.name, "method_config": run.method.config(), **teachers,
        **({"initial_weights": c.initial_weights} if c.initial_weights else {}),
        "dataset": c.data, "eps": c.eps, "eps_text": format_eps(c.eps), "seed": c.seed,
        "epochs": s.epochs, "epoch": epoch, "global_step": global_step, "recipe": c.recipe,
        "schedule": s.to_dict(), "extra_data": run.extra_data_provenance(), "run_dir": str(run.run_dir),
        "device": str(run.device), "precision": "bf16-autocast" if run.device.type == "cuda" else "fp32",
        "rdist_version": version("rdist"),
    }


def save_artifact(run: Run, model: nn.Module, name: str, *, epoch: int, global_step: int,
                  report: dict[str, Any] | None, best_epoch: int | None, average: dict | None) -> Path:
    """Write `model` as run_dir/name with the run's provenance and, when evaluated, its results; `average` says
    which weight average `model` is (`WeightAverage.describe()`; None: the live weights)."""
    provenance = {
        **_provenance(run, epoch, global_step), "average": average,
        "selection": {"checkpoint": name.removesuffix(".safetensors"), "on": run.eval_split,
                      "metric": run.method.select_metric, "n": len(run.eval_y), "best_epoch": best_epoch},
    }
    results = {}
    if report is not None:
        results[report_key(report)] = report
    return save_model(model, run.run_dir / name, dataset=run.config.data, input_shape=list(run.dataset.input_shape),
                      provenance=provenance, results=results)


def save_companion(run: Run, name: str, model: nn.Module, *, epoch: int, global_step: int) -> Path:
    """Write companion `name` (a role of `Method.companions`) as run_dir/<name>.safetensors, as of `epoch`, with the
    run's provenance and how it was trained (not evaluated: `rdist attack` it)."""
    plan = run.companion_plans[name]
    provenance = {**_provenance(run, epoch, global_step),
                  "companion": {"role": name, "student": run.config.student, **plan.to_dict()}}
    return save_model(model, run.run_dir / companion_file(name), dataset=run.config.data,
                      input_shape=list(run.dataset.input_shape), provenance=provenance)
