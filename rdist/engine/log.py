"""log.jsonl: one JSON object per epoch, flushed to disk as soon as the epoch ends."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from rdist.utils import atomic_path

LOG = "log.jsonl"


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """The epoch records of a log; a line cut short by a killed process is skipped."""
    records = []
    path = Path(path)
    if not path.is_file():
        return records
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class EpochLog:
    """Appends epoch records to `path`; `keep_through` drops the records of epochs a resume will redo."""

    def __init__(self, path: str | Path, keep_through: int = 0):
        self.path = Path(path)
        kept = [r for r in read_log(self.path) if r.get("epoch", 0) <= keep_through]
        with atomic_path(self.path) as tmp:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())
