"""What training steps leave behind: one step's device tensors (`StepOutput`) and an epoch's sums of them
(`EpochTotals`), read from the device every few steps and, under torchrun, combined over the ranks."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rdist.parallel import distributed, mean_over_ranks, total_over_ranks


@dataclass
class StepOutput:
    """What one update leaves on the device: reading any of it is the caller's choice of when to wait."""

    loss: torch.Tensor  # 0-dim fp32, detached; may be non-finite (the update then ran on garbage)
    clean_correct: torch.Tensor | None  # 0-dim int64; None when the loss never ran S(step.x)
    robust_correct: torch.Tensor | None  # ... S(xa); None also for methods without an attack
    images: int


class EpochTotals:
    """One epoch's step results, summed on the device and read (one host sync) every `Callback.report_every` steps.

    Accuracies come from the logits the method's own loss computed (`LogitRecorder`), in train mode; a
    method whose loss never runs S(x) has no clean accuracy (None), one without an attack no robust one.
    Under torchrun each step's loss, as `read` returns it, is the mean over the ranks (non-finite if any rank's
    is), and `over_ranks` makes the counts those of the global batches; in one process both are the rank's own.
    """

    def __init__(self, lr: float, steps: int, device: torch.device):
        self.lr = lr
        self.step_losses = torch.zeros(steps, device=device)  # the loss of each step, written on the device
        self.correct = torch.zeros(2, dtype=torch.int64, device=device)  # clean, robust
        self.steps = self.images = self.clean_seen = self.robust_seen = 0
        self.losses: list[float] = []  # the step losses read so far
        self.clean = self.robust = 0  # the correct counts at the last read

    def add(self, out: StepOutput) -> None:
        self.step_losses[self.steps] = out.loss
        if out.clean_correct is not None:
            self.correct[0] += out.clean_correct
            self.clean_seen += out.images
        if out.robust_correct is not None:
            self.correct[1] += out.robust_correct
            self.robust_seen += out.images
        self.steps += 1
        self.images += out.images

    def read(self) -> list[float]:
        """Wait for the steps added so far; returns the losses of those not read before (the mean over the ranks),
        and keeps them so."""
        values = torch.cat([self.step_losses[len(self.losses):self.steps], self.correct.to(torch.float64)]).tolist()
        new, (self.clean, self.robust) = mean_over_ranks(values[:-2]), (round(v) for v in values[-2:])
        self.losses.extend(new)
        return new

    def over_ranks(self) -> "EpochTotals":
        """The epoch's totals over all ranks (this object, updated): the counts summed. Every step's loss is the
        mean over the ranks already (`read`), and every loss has been read at the epoch's last step."""
        if not distributed():
            return self
        self.read()  # the correct counts on the host
        counts = [self.clean, self.robust, self.clean_seen, self.robust_seen, self.images]
        self.clean, self.robust, self.clean_seen, self.robust_seen, self.images = \
            (round(v) for v in total_over_ranks(counts))
        return self

    @property
    def mean_loss(self) -> float:
        return math.fsum(self.losses) / max(len(self.losses), 1)

    @property
    def clean_acc(self) -> float | None:
        return self.clean / self.clean_seen if self.clean_seen else None

    @property
    def robust_acc(self) -> float | None:
        return self.robust / self.robust_seen if self.robust_seen else None
