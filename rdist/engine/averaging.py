"""Weight averaging: the averaged student that a run evaluates, selects best.safetensors from and saves, behind one
interface for its two kinds.

- SWA (`--swa-start E`, a recipe's `swa_start`): the plain mean of the weights at the end of each epoch from E on
  (`torch.optim.swa_utils.AveragedModel`'s default average), its BatchNorm statistics recomputed on the real
  training split before it is evaluated or saved (`update_bn`): averaged weights need statistics of their own.
- EMA (`--ema D`, the generated-data recipes of Gowal et al. 2020, Rebuffi et al. 2021 and Wang et al. 2023):
  after every optimiser step t (0-based), avg <- d avg + (1 - d) w with d = min(D, (1 + t) / (10 + t)), the warm-up
  decay of DeepMind's `ema_update` (adversarial_robustness/jax/utils.py), starting from the initial weights (its
  `avg_params = params` at initialisation). BatchNorm statistics are not averaged: the official code evaluates the
  averaged parameters with the live model's state (`eval_epoch(self._avg_params, self._state)`), and so does rdist,
  copying the live buffers into the average whenever it is evaluated or saved.

Both live in an `AveragedModel` (its module, its `n_averaged`, its state dict in checkpoint.pt). The EMA's decay
with its warm-up is the `multi_avg_fn` below of the number averaged n = t + 1 (the initial copy counts one):
d = min(D, n / (n + 9)). AveragedModel's own `update_parameters` reads `n_averaged` on the host and copies it to
the device at every call (torch 2.14), a host-device sync per step on CUDA; so `EMA.after_step` calls the same
function itself with n from the host's count: nothing per step waits for the device.
"""

from __future__ import annotations

from typing import Callable, Iterable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn


def ema_decay(decay: float, n: int) -> float:
    """The decay of the n-th average (n >= 1 averaged so far, the initial weights included): the official
    min(decay, (1 + t) / (10 + t)) at step t = n - 1."""
    return min(decay, n / (n + 9))


def ema_multi_avg_fn(decay: float) -> Callable[[list[torch.Tensor], list[torch.Tensor], int], None]:
    """AveragedModel's `multi_avg_fn` of the EMA with the warm-up decay: avg <- d avg + (1 - d) w, in place."""

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: int | torch.Tensor) -> None:
        d = ema_decay(decay, int(n))
        torch._foreach_lerp_(averaged, current, 1.0 - d)  # avg + (1 - d)(w - avg)

    return update


class WeightAverage:
    """What the trainer asks of a weight average: update it, say whether it is what epoch `e` saves, give that
    model ready to evaluate, and its checkpoint state."""

    kind: str

    def __init__(self, student: nn.Module, averaged: AveragedModel):
        self.student, self.averaged = student, averaged

    def after_step(self) -> None:
        """After every optimiser step."""

    def after_epoch(self, epoch: int) -> None:
        """After every whole epoch's last step."""

    def active(self, epoch: int) -> bool:
        """Whether epoch `epoch` evaluates and saves the average (else the live weights)."""
        raise NotImplementedError

    def model(self, refresh_batches: Callable[[], Iterable]) -> nn.Module:
        """The averaged model with the BatchNorm statistics it is evaluated and saved with; called once per epoch
        (`refresh_batches()` gives the data SWA recomputes them on)."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What the artifacts' provenance records: {"kind": ..., and the kind's setting}."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.averaged.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.averaged.load_state_dict(state)


class SWA(WeightAverage):
    kind = "swa"

    def __init__(self, student: nn.Module, start: int):
        super().__init__(student, AveragedModel(student))
        self.start = start

    def after_epoch(self, epoch: int) -> None:
        if epoch >= self.start:
            self.averaged.update_parameters(self.student)

    def active(self, epoch: int) -> bool:
        return epoch >= self.start and int(self.averaged.n_averaged) > 0

    def model(self, refresh_batches: Callable[[], Iterable]) -> nn.Module:
        update_bn(refresh_batches(), self.averaged)
        return self.averaged.module

    def describe(self) -> dict:
        return {"kind": self.kind, "start": self.start}


class EMA(WeightAverage):
    kind = "ema"

    def __init__(self, student: nn.Module, decay: float):
        # n_averaged stays on the host (AveragedModel puts it on `device`, None here), where reading it costs nothing.
        super().__init__(student, AveragedModel(student, multi_avg_fn=ema_multi_avg_fn(decay), use_buffers=False))
        self.decay = decay
        self.averaged.update_parameters(student)  # the initial weights, as the official avg_params = params

    def after_step(self) -> None:
        averaged = self.averaged
        with torch.no_grad():
            averaged.multi_avg_fn([p.detach() for p in averaged.module.parameters()],
                                  [p.detach() for p in self.student.parameters()], int(averaged.n_averaged))
        averaged.n_averaged += 1

    def active(self, epoch: int) -> bool:
        return True

    def model(self, refresh_batches: Callable[[], Iterable]) -> nn.Module:
        with torch.no_grad():
            for mine, live in zip(self.averaged.module.buffers(), self.student.buffers(), strict=True):
                mine.copy_(live)
        return self.averaged.module

    def describe(self) -> dict:
        return {"kind": self.kind, "decay": self.decay}


def weight_average(student: nn.Module, average: dict | None) -> WeightAverage | None:
    """The weight average `Schedule.average` describes, over `student` (None: the run saves its live weights)."""
    if average is None:
        return None
    if average["kind"] == "ema":
        return EMA(student, average["decay"])
    return SWA(student, average["start"])
