"""The run-directory format: what files one training run writes, and how every reader finds and reads them.

    best.safetensors   the selected epoch's model (an artifact), from the first finished epoch on
    last.safetensors   the latest epoch's model, written at the end of every epoch (and of a --max-steps cut)
    log.jsonl          one `EpochRecord` per epoch, written as the run starts and appended to after each epoch
    checkpoint.pt      everything a resume needs, written at the end of every finished epoch
    config.yaml        the run's resolved configuration, keyed as the options of the command that trains it
                       (`rdist.engine.config_file`), written as it starts: `--config` trains the same run again from it
    <role>.safetensors a network the method trains beside the student (a companion: PeerAiD's peer.safetensors),
                       as of the latest epoch, written with last.safetensors
    .rdist.lock        while a process writes here: its hold (`files.hold_directory`; under torchrun rank 0 holds it)

Several seeds of one run (`--seeds`) are run directories `seed-N` under one group directory.

The training engine (`rdist.engine`) writes these files; `--resume`, `rdist compare --runs`, its plots and the
seed groups read them through this module, which needs nothing of the engine.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rdist.errors import RdistError

BEST, LAST, LOG, CHECKPOINT = "best.safetensors", "last.safetensors", "log.jsonl", "checkpoint.pt"
CONFIG = "config.yaml"
FILES = (BEST, LAST, LOG, CHECKPOINT, CONFIG)


def companion_file(role: str) -> str:
    """The file a run writes its companion `role` to."""
    return f"{role}.safetensors"


@dataclass(frozen=True)
class RunDirectory:
    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

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


@dataclass(frozen=True)
class EpochRecord:
    """What one epoch did: the line of log.jsonl that the progress display, `rdist compare --runs` plots and
    `--json` read.

    In the file, the held-out accuracies are named after their split (`val_clean_acc` or `test_clean_acc`, the
    same for pgd20), so that a log says which data it measured on.
    """

    epoch: int
    partial: bool = False  # cut short by --max-steps: evaluated and saved as last, never selected
    global_step: int | None = None
    lr: float | None = None
    train_loss: float | None = None  # the mean of the method's loss over the epoch's steps
    train_clean_acc: float | None = None  # from the loss's own S(x) logits, train mode; None if it runs none
    train_robust_acc: float | None = None  # ... S(xa) logits
    split: str = "val"  # the split evaluated on: "val" (held out of the training data) or "test"
    clean_acc: float | None = None  # None for an epoch not evaluated (--eval-every)
    pgd20_acc: float | None = None
    eval_n: int | None = None
    best_epoch: int | None = None  # the epoch best.safetensors holds, so far
    average: str | None = None  # the weight average the saved model is: "ema", "swa", or None (the live weights)
    train_seconds: float | None = None
    seconds: float | None = None  # training, evaluation and saving
    images_per_s: float | None = None  # training images per second

    def to_json(self) -> dict[str, Any]:
        values = asdict(self)
        split = values.pop("split")
        out = {}
        for key, value in values.items():
            out[f"{split}_{key}" if key in ("clean_acc", "pgd20_acc") else key] = value
        return out

    @classmethod
    def from_json(cls, values: dict[str, Any]) -> "EpochRecord":
        """A record as `to_json` writes it; unknown keys are ignored."""
        split = next((key.removesuffix("_clean_acc") for key in values
                      if key.endswith("_clean_acc") and key != "train_clean_acc"), "val")
        known = {f.name for f in fields(cls)} - {"split", "clean_acc", "pgd20_acc"}
        return cls(**{k: v for k, v in values.items() if k in known}, split=split,
                   clean_acc=values.get(f"{split}_clean_acc"), pgd20_acc=values.get(f"{split}_pgd20_acc"))


def read_log(path: str | Path) -> list[EpochRecord]:
    """The epoch records of a log; a line cut short by a killed process (or not a record) is skipped."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            values = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(values, dict) and isinstance(values.get("epoch"), int):
            records.append(EpochRecord.from_json(values))
    return records


def epoch_records(records: list[EpochRecord]) -> list[EpochRecord]:
    """One record per epoch, in order; an epoch logged twice (a resumed interrupted epoch) keeps its last record."""
    by_epoch = {r.epoch: r for r in records}
    return [by_epoch[e] for e in sorted(by_epoch)]


SEED_DIR = re.compile(r"seed-(\d+)")


def seed_dir(group: str | Path, seed: int) -> Path:
    return Path(group) / f"seed-{seed}"


def group_seed_dirs(group: str | Path) -> list[Path]:
    """The seed-N run directories of a group directory, by seed; empty when `group` is no group."""
    group = Path(group)
    if not group.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in group.iterdir() if p.is_dir() and (m := SEED_DIR.fullmatch(p.name))]
    return [p for _, p in sorted(found)]
