"""How a caller watches a run: the engine calls these hooks and never draws anything itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from rdist.runs import EpochRecord

if TYPE_CHECKING:
    from rdist.engine.trainer import RunResult


@dataclass
class StepInfo:
    epoch: int
    epochs: int
    step: int  # 1-based step within the epoch, the last one this report covers
    steps: int  # steps in this epoch
    global_step: int  # optimiser steps since the run began
    loss: float  # of the last step
    mean_loss: float  # over the epoch so far
    # Running training accuracy on clean inputs, from the S(x) logits of the method's own loss (train mode);
    # None for a method whose loss never runs S(x).
    clean_acc: float | None
    robust_acc: float | None  # ... from its S(xa) logits; None for methods without an attack
    lr: float
    losses: tuple[float, ...] = ()  # the loss of each step since the previous report, in order


class Callback:
    """Override what you need; every hook does nothing by default."""

    # Steps between two `on_step` reports. Each report waits for the device to finish the steps so far (a
    # host sync), which a training step otherwise never does; 1 reports every step, at that cost.
    report_every: int = 20
    # The name under which the run's checkpoint keeps this callback's `state_dict` (None: it keeps nothing).
    state_key: str | None = None

    def state_dict(self) -> dict[str, Any]:
        """Plain values to keep in the run's checkpoint, written at the end of every finished epoch, so that a
        resumed run picks up where this one was (a tracker: its run id). Called only if `state_key` is set."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """What `state_dict` returned when the checkpoint a run resumes from was written; called before
        `on_run_start`, and only for a resumed run whose checkpoint holds state under `state_key`."""

    def on_run_start(self, run_dir: Path, start_epoch: int, epochs: int, steps_per_epoch: int,
                     resumed: bool) -> None:
        pass

    def on_epoch_start(self, epoch: int, epochs: int, steps: int) -> None:
        pass

    def on_step(self, info: StepInfo) -> None:
        """Called every few steps (the engine reads the device only then) and after the epoch's last step."""

    def on_eval(self, epoch: int, attack: str, done: int, total: int) -> None:
        pass

    def on_epoch_end(self, record: EpochRecord) -> None:
        """`record` is the epoch's log.jsonl line."""

    def on_run_end(self, result: RunResult | None) -> None:
        """After the run's last step, with what it wrote; None when it stopped on an error. Either way the last
        hook of a run, where a callback releases what `on_run_start` took (a live display, a file), so that one
        callback can watch several runs in turn."""


class Callbacks(Callback):
    """Several callbacks as one (a progress display and trackers): each hook calls them in order; reports come as
    often as the most frequent asks, and the checkpoint keeps each one's state under its `state_key`."""

    def __init__(self, callbacks: Iterable[Callback | None]):
        self.callbacks = [c for c in callbacks if c is not None]
        self.report_every = min((c.report_every for c in self.callbacks), default=Callback.report_every)

    def state_dict(self) -> dict[str, Any]:
        return {c.state_key: c.state_dict() for c in self.callbacks if c.state_key}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for c in self.callbacks:
            if c.state_key and c.state_key in state:
                c.load_state_dict(state[c.state_key])

    def on_run_start(self, *args) -> None:
        for c in self.callbacks:
            c.on_run_start(*args)

    def on_epoch_start(self, *args) -> None:
        for c in self.callbacks:
            c.on_epoch_start(*args)

    def on_step(self, info: StepInfo) -> None:
        for c in self.callbacks:
            c.on_step(info)

    def on_eval(self, *args) -> None:
        for c in self.callbacks:
            c.on_eval(*args)

    def on_epoch_end(self, record: EpochRecord) -> None:
        for c in self.callbacks:
            c.on_epoch_end(record)

    def on_run_end(self, result: RunResult | None) -> None:
        """Every callback's, even when one of them fails (each releases what it holds); the first error is raised
        after the others have run."""
        error = None
        for c in self.callbacks:
            try:
                c.on_run_end(result)
            except Exception as exc:  # noqa: BLE001  (re-raised below)
                error = error or exc
        if error is not None:
            raise error
