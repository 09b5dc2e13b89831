"""log.jsonl: one `EpochRecord` per epoch as a JSON object, flushed to disk as soon as the epoch ends."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from rdist.files import atomic_path


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
    swa: bool = False  # whether the saved model is the weight average
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


class EpochLog:
    """Appends epoch records to `path`; `keep_through` drops the records of epochs a resume will redo."""

    def __init__(self, path: str | Path, keep_through: int = 0):
        self.path = Path(path)
        kept = [r for r in read_log(self.path) if r.epoch <= keep_through]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r.to_json()) + "\n" for r in kept))

    def write(self, record: EpochRecord) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record.to_json()) + "\n")
            f.flush()
            os.fsync(f.fileno())
