"""How a caller watches a run: the engine calls these hooks and never draws anything itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class StepInfo:
    epoch: int
    epochs: int
    step: int  # 1-based step within the epoch
    steps: int  # steps in this epoch
    global_step: int  # optimiser steps since the run began
    loss: float
    mean_loss: float  # over the epoch so far
    clean_acc: float  # running training accuracy on clean inputs (measured in eval mode)
    robust_acc: float | None  # ... on the method's adversarial inputs; None for methods without an attack
    lr: float


class Callback:
    """Override what you need; every hook does nothing by default."""

    def on_run_start(self, run_dir: Path, start_epoch: int, epochs: int, steps_per_epoch: int,
                     resumed: bool) -> None:
        pass

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def on_step(self, info: StepInfo) -> None:
        pass

    def on_eval(self, epoch: int, attack: str, done: int, total: int) -> None:
        pass

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """`record` is the epoch's log.jsonl line."""
