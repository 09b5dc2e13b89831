"""One training step, in the two phases every method has: the inner attack and the outer update.

The engine knows nothing about a method beyond `bn_mode`, `perturb` and `loss`. Models and inputs are
channels-last on every device. On CUDA the forward passes run under bf16 autocast; the perturbation stays an
fp32 tensor (the attack steps on fp32 inputs), BN running statistics and the SGD state are fp32, and the
losses are computed in fp32 (cross-entropy by autocast's own rules, the KL helper explicitly).

Nothing here waits for the device: the loss, its finiteness and the training-accuracy counts stay device
tensors (`StepOutput`) that the trainer sums on the device and reads once every few steps.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rdist.device import autocast
from rdist.engine.totals import StepOutput
from rdist.methods import Method, Step


class LogitRecorder:
    """The student as the outer loss sees it: it forwards every call and keeps, detached, the logits of the
    first call on exactly `step.x` (clean) and on exactly `xa` (adversarial).

    This is how training accuracy comes from the forwards the method runs anyway, with no change to any
    method: the engine hands the loss this wrapper instead of the module. A method whose loss never runs
    S(x) (one that trains on adversarial inputs only) reports no clean accuracy; one that forwards another
    tensor (a concatenation of x and xa, say) reports nothing for it. The logits are those of train mode, the
    mode the loss runs in.
    """

    def __init__(self, module: nn.Module, clean: torch.Tensor, adversarial: torch.Tensor | None):
        self.module, self.clean, self.adversarial = module, clean, adversarial
        self.clean_logits: torch.Tensor | None = None
        self.adversarial_logits: torch.Tensor | None = None

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.module(inputs)
        if inputs is self.clean and self.clean_logits is None:
            self.clean_logits = logits.detach()
        elif inputs is self.adversarial and self.adversarial_logits is None:
            self.adversarial_logits = logits.detach()
        return logits

    def __getattr__(self, name: str):
        # Anything else a loss asks of the student (its training flag, its modules) is the module's own.
        return getattr(self.module, name)


def attack_phase(student: nn.Module, method: Method, step: Step) -> torch.Tensor | None:
    """The method's inner maximisation, with the student's BN layers in the method's mode.

    `student` is the module to run (under DDP, the unwrapped one: the attack must not synchronise gradients).
    """
    student.train(method.bn_mode == "train")
    with autocast(step.x.device):
        return method.perturb(student, step)


def update_phase(student: nn.Module, method: Method, step: Step, xa: torch.Tensor | None,
                 optimizer: torch.optim.Optimizer, grad_scale: float = 1.0,
                 others: Sequence[torch.optim.Optimizer] = ()) -> StepOutput:
    """Outer loss, one backward and the SGD steps in train mode, without waiting for the device.

    `others` are the optimisers of the networks trained beside the student (`step.companions`): the method's one
    total loss reaches them in the same backward, and each steps after it.

    `grad_scale` weighs this process's gradient under DDP, which averages the ranks' gradients: a rank holding
    more or fewer rows than the even share of an uneven batch (`DataParallelTraining.shard`) scales its loss by
    its share, so that the update is the mean over the global batch. The reported loss is the unscaled one.

    The finiteness of the loss is not checked here (that would be a host sync before the backward): the
    trainer reads the losses every few steps and stops at the first non-finite one, before anything is saved.
    """
    student.train()
    recorder = LogitRecorder(student, step.x, xa)
    with autocast(step.x.device):
        loss = method.loss(recorder, step, xa)
    optimizers = (optimizer, *others)
    for each in optimizers:
        each.zero_grad(set_to_none=True)
    (loss if grad_scale == 1.0 else loss * grad_scale).backward()
    for each in optimizers:
        each.step()

    def correct(logits: torch.Tensor | None) -> torch.Tensor | None:
        return (logits.argmax(1) == step.y).sum() if logits is not None else None

    return StepOutput(loss.detach().float(), correct(recorder.clean_logits), correct(recorder.adversarial_logits),
                      len(step.y))
