"""Several seeds of one run: one run directory per seed (`seed-N`) under one group directory.

Running the same group again continues it: a seed whose directory holds a checkpoint is resumed (the
resume refuses a configuration that differs from the run's), a finished one returns at once, a missing
one starts. A seed's checkpoint is its proof of progress; nothing else is kept about the group.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from rdist.engine.callbacks import Callback
from rdist.engine.config import TrainConfig
from rdist.engine.rundir import default_run_dir
from rdist.engine.trainer import RunResult, train
from rdist.errors import RdistError
from rdist.runs import RunDirectory, seed_dir


def parse_seeds(text: str) -> list[int]:
    """[0, 1, 2] from "0,1,2"; refuses anything but distinct non-negative integers."""
    parts = [p.strip() for p in str(text).split(",")]
    if not all(p.isdigit() for p in parts):
        raise RdistError(f"cannot read --seeds '{text}': give distinct non-negative integers separated by commas, "
                         "e.g. --seeds 0,1,2")
    seeds = [int(p) for p in parts]
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise RdistError(f"--seeds '{text}' repeats seed {', '.join(map(str, repeated))}; give each seed once, "
                         "e.g. --seeds 0,1,2")
    return seeds


def group_dir(config: TrainConfig) -> Path:
    """Where the seeds of `config` go: its --out, else the default run directory name."""
    return Path(config.out) if config.out else default_run_dir(config).path


def train_in(config: TrainConfig, run_dir: str | Path, callback: Callback | None = None) -> RunResult:
    """Train `config` in `run_dir`: continued from its checkpoint when it has one (finished: returns at once),
    started when it has none (a run killed before its first epoch ended starts again)."""
    if RunDirectory(run_dir).has_checkpoint():
        return train(replace(config, resume=str(run_dir), out=None), callback)
    return train(replace(config, out=str(run_dir), resume=None), callback)


def train_seed(config: TrainConfig, group: str | Path, seed: int, callback: Callback | None = None) -> RunResult:
    """Train (or continue, or find finished) seed `seed` of `config` in `group`/seed-N."""
    return train_in(replace(config, seed=seed), seed_dir(group, seed), callback)


def train_seeds(config: TrainConfig, seeds: list[int], callback: Callback | None = None) -> list[RunResult]:
    """Every seed of `config`, one after the other, in the group directory `config.out` (see `group_dir`)."""
    if config.resume:
        raise RdistError("--seeds trains a group of runs: give its --out directory (running the same command "
                         "again continues it), not --resume")
    group = group_dir(config)
    return [train_seed(config, group, seed, callback) for seed in seeds]
