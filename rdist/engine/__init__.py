"""The training engine: one loop for every method, with evaluation, artifacts, a JSONL log and exact resume.

    from rdist.engine import TrainConfig, train
    result = train(TrainConfig(method="rslad", student="resnet18", teachers={"robust": "teacher.safetensors"},
                               epochs=10))
"""

from rdist.engine.callbacks import Callback, StepInfo
from rdist.engine.checkpoint import load_checkpoint, resume_config
from rdist.engine.config import TrainConfig
from rdist.engine.schedule import Schedule, resolve_schedule
from rdist.engine.seeds import parse_seeds, train_seed, train_seeds
from rdist.engine.trainer import RunResult, train
# The run directory a training run writes (its format is rdist.runs, which readers use without the engine).
from rdist.runs import BEST, CHECKPOINT, LAST, LOG, EpochRecord, RunDirectory, group_seed_dirs, read_log, seed_dir

__all__ = ["BEST", "CHECKPOINT", "Callback", "EpochRecord", "LAST", "LOG", "RunDirectory", "RunResult", "Schedule",
           "StepInfo", "TrainConfig", "group_seed_dirs", "load_checkpoint", "parse_seeds", "read_log",
           "resolve_schedule", "resume_config", "seed_dir", "train", "train_seed", "train_seeds"]
