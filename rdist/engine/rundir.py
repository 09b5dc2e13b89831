"""What a run directory is: the files one training run writes, and how every reader finds them.

    best.safetensors   the selected epoch's model (an artifact), from the first finished epoch on
    last.safetensors   the latest epoch's model, written at the end of every epoch (and of a --max-steps cut)
    log.jsonl          one `EpochRecord` per epoch, written as the run starts and appended to after each epoch
    checkpoint.pt      everything a resume needs, written at the end of every finished epoch
    .rdist.lock        while a process writes here: its hold (`files.hold_directory`; under torchrun rank 0 holds it)

`rdist distill`, `rdist teacher train`, `--resume`, `rdist compare --runs` and the seed groups of `--seeds`
all go through `RunDirectory`.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from rdist.engine.config import TrainConfig
from rdist.errors import RdistError

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
