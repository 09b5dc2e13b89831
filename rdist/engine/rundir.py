"""What a run directory is: the files one training run writes, how every reader finds them, and how the run
writes them.

    best.safetensors   the selected epoch's model (an artifact), from the first finished epoch on
    last.safetensors   the latest epoch's model, written at the end of every epoch (and of a --max-steps cut)
    log.jsonl          one `EpochRecord` per epoch, written as the run starts and appended to after each epoch
    checkpoint.pt      everything a resume needs, written at the end of every finished epoch
    .rdist.lock        while a process writes here: its hold (`files.hold_directory`; under torchrun rank 0 holds it)

`rdist distill`, `rdist teacher train`, `--resume`, `rdist compare --runs` and the seed groups of `--seeds`
all go through `RunDirectory`. The reading side (the file names and `RunDirectory`) needs nothing of the
engine; the writing side (`check_run_dir`, `hold_run_dir`, `save_artifact`: self-describing artifacts that say how they were made
and how they did) follows it.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from torch import nn

from rdist.artifact import results_key, save_model
from rdist.attacks import EvalResult
from rdist.data import npz_file
from rdist.engine.config import TrainConfig
from rdist.errors import RdistError
from rdist.files import check_output, hold_directory, sweep_temp_files
from rdist.methods import role
from rdist.utils import format_eps

if TYPE_CHECKING:
    from rdist.engine.build import Run

BEST, LAST, LOG, CHECKPOINT = "best.safetensors", "last.safetensors", "log.jsonl", "checkpoint.pt"
FILES = (BEST, LAST, LOG, CHECKPOINT)


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def default(cls, config: TrainConfig) -> "RunDirectory":
        """runs/<method>-<student>-<data>-<timestamp>, where a run goes without --out."""
        data = Path(config.data[4:]).stem if config.data.startswith("npz:") else config.data
        name = re.sub(r"[^A-Za-z0-9.+_-]+", "_", f"{config.method}-{config.student}-{data}")
        return cls(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")

    @property
    def best(self) -> Path:
        return self.path / BEST

    @property
    def last(self) -> Path:
        return self.path / LAST

    @property
    def log(self) -> Path:
        return self.path / LOG

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def is_run(self) -> bool:
        """Whether a run started here: it writes its log before its first step."""
        return self.log.is_file()

    def has_checkpoint(self) -> bool:
        """Whether a run here finished an epoch, so that it can be resumed."""
        return self.checkpoint.is_file()

    def models(self) -> tuple[Path | None, Path | None]:
        """(best.safetensors, last.safetensors), each None until written."""
        return (self.best if self.best.is_file() else None), (self.last if self.last.is_file() else None)

    def model(self) -> Path:
        """The run's model: best.safetensors, or last.safetensors while none is selected yet."""
        if not self.path.is_dir():
            raise RdistError(f"run directory not found: {self.path}")
        if not self.is_run():
            raise RdistError(f"{self.path} has no {LOG}: pass a directory written by `rdist distill` or "
                             "`rdist teacher train`")
        best, last = self.models()
        if best or last:
            return best or last
        raise RdistError(f"{self.path} has a {LOG} but no {BEST} or {LAST} yet: wait for its first epoch to end")


# The writing side: what a run puts in its directory.

EVAL_ATTACKS = ["clean", "pgd20"]


def check_run_dir(config: TrainConfig) -> None:
    """Refuse, before anything is built, a run directory that cannot be written or whose files would
    overwrite one of the run's inputs (a teacher saved as best.safetensors there, say)."""
    inputs = [*((f"the {role(name).noun}", spec) for name, spec in config.teachers.items()),
              ("the dataset", npz_file(config.data))]
    check_output(config.resume or config.out or "runs", "--resume" if config.resume else "--out", directory=True,
                 files=FILES, inputs=inputs)


@contextlib.contextmanager
def hold_run_dir(run: Run) -> Iterator[None]:
    """The run directory, held for this run alone while the block runs (`files.hold_directory`), with what atomic
    writes of a killed run left there swept; refused at once, in one line naming the holder, when another process
    holds it.

    Under torchrun rank 0 holds it for the job and the other ranks never touch it: rank 0's verdict reaches every
    rank (`Parallel.share`) before anything else is exchanged, so that all of them stop together rather than wait
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
        refusal = run.parallel.share(refusal)
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


def save_artifact(run: Run, model: nn.Module, name: str, *, epoch: int, global_step: int,
                  report: dict[str, Any] | None, best_epoch: int | None, swa: bool) -> Path:
    """Write `model` as run_dir/name with the run's provenance and, when evaluated, its results; `swa` says
    whether `model` is the weight average."""
    c, s = run.config, run.schedule
    # The artifact format's keys: each role's own (`Role.field`) and <key>_arch.
    teachers = {}
    for role_name, teacher in run.teachers.items():
        key = role(role_name).field
        teachers[key], teachers[f"{key}_arch"] = c.teachers[role_name], _arch_name(teacher)
    provenance = {
        "method": run.method.name, "method_config": run.method.config(), **teachers,
        "dataset": c.data, "eps": c.eps, "eps_text": format_eps(c.eps), "seed": c.seed,
        "epochs": s.epochs, "epoch": epoch, "global_step": global_step, "recipe": c.recipe,
        "schedule": s.to_dict(), "swa": swa,
        "selection": {"checkpoint": name.removesuffix(".safetensors"), "on": run.eval_split,
                      "metric": run.method.select_metric, "n": len(run.eval_y), "best_epoch": best_epoch},
        "run_dir": str(run.run_dir), "device": str(run.device),
        "precision": "bf16-autocast" if run.device.type == "cuda" else "fp32", "rdist_version": version("rdist"),
    }
    results = {}
    if report is not None:
        results[results_key(report["attacks"], report["dataset"], report["eps"], report["n"])] = report
    return save_model(model, run.run_dir / name, dataset=c.data, input_shape=list(run.dataset.input_shape),
                      provenance=provenance, results=results)
