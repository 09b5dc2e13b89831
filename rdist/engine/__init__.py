"""The training engine: one loop for every method, with evaluation, artifacts, a JSONL log and exact resume.

    from rdist.engine import TrainConfig, train
    result = train(TrainConfig(method=name, student="resnet18", teachers={role: "teacher.safetensors"}, epochs=10))

`name` is any of `rdist.methods.list_methods()`, with one model for each role its `Method.teachers` declares.
The engine knows nothing else of any method: what a method is lives in `rdist.methods`.
"""

from rdist.engine.callbacks import Callback, Callbacks, StepInfo
from rdist.engine.checkpoint import load_checkpoint, resume_config
from rdist.engine.config import TrainConfig
from rdist.engine.schedule import Schedule, resolve_schedule
from rdist.engine.seeds import parse_seeds, train_seed, train_seeds
from rdist.engine.trainer import RunResult, train
# The run directory a training run writes (its format is rdist.runs, which readers use without the engine).
from rdist.runs import BEST, CHECKPOINT, LAST, LOG, EpochRecord, RunDirectory, group_seed_dirs, read_log, seed_dir

__all__ = ["BEST", "CHECKPOINT", "Callback", "Callbacks", "EpochRecord", "LAST", "LOG", "RunDirectory", "RunResult", "Schedule",
           "StepInfo", "TrainConfig", "group_seed_dirs", "load_checkpoint", "parse_seeds", "read_log",
           "resolve_schedule", "resume_config", "seed_dir", "train", "train_seed", "train_seeds"]
