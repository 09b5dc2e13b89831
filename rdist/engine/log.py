"""Writing log.jsonl: one `rdist.runs.EpochRecord` per epoch as a JSON object, flushed to disk as soon as the epoch
ends (`rdist.runs` reads it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rdist.files import atomic_path
from rdist.runs import EpochRecord, read_log


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
