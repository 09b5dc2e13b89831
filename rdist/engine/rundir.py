"""Where a new training run goes without --out. What a run directory holds, and how to read it, is
`rdist.runs`."""

from __future__ import annotations

import re
import time
from pathlib import Path

from rdist.engine.config import TrainConfig
from rdist.runs import RunDirectory


def default_run_dir(config: TrainConfig) -> RunDirectory:
    """runs/<method>-<student>-<data>-<timestamp>, where a run goes without --out."""
    data = Path(config.data[4:]).stem if config.data.startswith("npz:") else config.data
    name = re.sub(r"[^A-Za-z0-9.+_-]+", "_", f"{config.method}-{config.student}-{data}")
    return RunDirectory(Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}")
