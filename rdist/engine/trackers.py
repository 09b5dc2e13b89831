"""Experiment trackers, as callbacks: TensorBoard and Weights & Biases (`--log tensorboard`, `--log wandb`).

Both are optional packages (`pip install 'rdist[tensorboard]'`, `'rdist[wandb]'`); a tracker whose package is
missing is refused when it is made, before the run is built, in one line naming the extra. A tracker reports what
the run reports to every callback, from the process it runs in (the CLI makes trackers on rank 0 only):

    step/loss        every step's loss (the mean over the ranks under torchrun), at its global step
    epoch/KEY        every number of the epoch's log.jsonl record (loss, accuracies, lr, seconds, ...), at the
                     global step that ends the epoch

Its own run (TensorBoard's log directory, W&B's run id) is kept in the run's checkpoint (`Callback.state_dict`), so
that a resumed run, by --resume or by the same command run again, goes on in the same tracker run: TensorBoard
writes on in the same directory and purges what the interrupted run logged after its checkpoint (`purge_step`),
W&B resumes the run by its id (`resume="allow"`). W&B ignores steps it has already seen, so the steps an
interrupted run logged after its last checkpoint keep their first values there.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rdist.engine.callbacks import Callback, StepInfo
from rdist.errors import RdistError
from rdist.runs import CONFIG, EpochRecord
from rdist.utils import first_line

if TYPE_CHECKING:
    from rdist.engine.trainer import RunResult


def _require(module: str, extra: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise RdistError(f"--log {extra} needs the {module} package, which is not installed: "
                         f"pip install 'rdist[{extra}]'")


def epoch_scalars(record: EpochRecord) -> dict[str, float]:
    """The numbers of an epoch's log.jsonl line, as a tracker records them (switches and unset values left out)."""
    return {f"epoch/{key}": value for key, value in record.to_json().items()
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "global_step"}


class Tracker(Callback):
    """What both trackers share: the step and epoch scalars (see the module docstring), and the state a resumed run
    continues from. A subclass opens its run in `on_run_start`, writes in `_log` and closes in `_close`."""

    name: str  # also its `state_key`: where the checkpoint keeps its state

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}  # what the checkpoint a run resumes from kept of this tracker
        self.global_step = 0  # the last step logged

    def state_dict(self) -> dict[str, Any]:
        return {**self._run_state(), "global_step": self.global_step}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = dict(state)

    def on_step(self, info: StepInfo) -> None:
        first = info.global_step - len(info.losses) + 1
        for offset, loss in enumerate(info.losses):
            self._log({"step/loss": loss}, first + offset)
        self.global_step = info.global_step

    def on_epoch_end(self, record: EpochRecord) -> None:
        self._log(epoch_scalars(record), record.global_step)

    def on_run_end(self, result: RunResult | None) -> None:
        try:
            self._close(result)
        finally:  # the next run this tracker watches (the next seed) starts its own
            self.state, self.global_step = {}, 0

    def _run_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _log(self, values: dict[str, float], step: int) -> None:
        raise NotImplementedError

    def _close(self, result: RunResult | None) -> None:
        raise NotImplementedError


class TensorBoard(Tracker):
    """Event files in RUN_DIR/tensorboard (`tensorboard --logdir runs` shows every run under runs/)."""

    name = state_key = "tensorboard"
    FOLDER = "tensorboard"

    def __init__(self) -> None:
        _require("tensorboard", "tensorboard")
        super().__init__()
        self.writer = None

    def on_run_start(self, run_dir: Path, start_epoch: int, epochs: int, steps_per_epoch: int,
                     resumed: bool) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # Events after the checkpoint's last step are the interrupted run's, which this one logs again.
        purge = self.state["global_step"] + 1 if resumed and "global_step" in self.state else None
        self.global_step = self.state.get("global_step", 0)
        self.writer = SummaryWriter(str(Path(run_dir) / self.FOLDER), purge_step=purge)

    def _run_state(self) -> dict[str, Any]:
        return {"log_dir": self.FOLDER}

    def _log(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def _close(self, result: RunResult | None) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class WandB(Tracker):
    """A W&B run named after the run directory, in project $WANDB_PROJECT (default rdist), its config the run's
    config.yaml. W&B's own settings apply: WANDB_MODE=offline, WANDB_DIR, WANDB_API_KEY, `wandb login`."""

    name = state_key = "wandb"

    def __init__(self, project: str | None = None) -> None:
        _require("wandb", "wandb")
        super().__init__()
        self.project, self.run = project, None

    def on_run_start(self, run_dir: Path, start_epoch: int, epochs: int, steps_per_epoch: int,
                     resumed: bool) -> None:
        import wandb
        import yaml

        config_file = Path(run_dir) / CONFIG
        config = yaml.safe_load(config_file.read_text()) if config_file.is_file() else None
        run_id = self.state.get("id") if resumed else None
        self.global_step = self.state.get("global_step", 0) if resumed else 0
        try:
            self.run = wandb.init(project=self.project or os.environ.get("WANDB_PROJECT") or "rdist",
                                  name=Path(run_dir).name, id=run_id, resume="allow" if run_id else None,
                                  config=config)
        except Exception as exc:  # wandb raises its own errors (no API key, no network) and OSErrors
            raise RdistError(f"--log wandb cannot start a W&B run ({type(exc).__name__}: {first_line(exc)}); log in "
                             "with `wandb login` (or set WANDB_API_KEY), or log offline with WANDB_MODE=offline") \
                from None

    def _run_state(self) -> dict[str, Any]:
        return {"id": self.run.id} if self.run is not None else {}

    def _log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def _close(self, result: RunResult | None) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if result is not None else 1)
            self.run = None


TRACKERS: dict[str, type[Tracker]] = {"tensorboard": TensorBoard, "wandb": WandB}


def create_tracker(name: str) -> Tracker:
    """The tracker `--log NAME` names; refused in one line when unknown or when its package is missing."""
    from rdist.utils import unknown

    if name not in TRACKERS:
        raise unknown("--log tracker", name, TRACKERS)
    return TRACKERS[name]()
