"""One training step, in the two phases every method has: the inner attack and the outer update.

The engine knows nothing about a method beyond `bn_mode`, `perturb` and `loss`. Models and inputs are
channels-last on every device. On CUDA the forward passes run under bf16 autocast; the perturbation stays an
fp32 tensor (the attack steps on fp32 inputs), BN running statistics and the SGD state are fp32, and the
losses are computed in fp32 (cross-entropy by autocast's own rules, the KL helper explicitly).

Nothing here waits for the device: the loss, its finiteness and the training-accuracy counts stay device
tensors (`StepOutput`) that the trainer sums on the device and reads once every few steps.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from rdist.methods import Step, Method


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def cudnn_autotune(device: torch.device):
    """cuDNN picks the fastest convolution algorithms for the shapes it sees, while this block runs.

    Scoped rather than set for the process: a library must not change a global the user's own code relies
    on (autotuning makes cuDNN nondeterministic, and costs time at every new shape).
    """
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous


def channels_last(model: nn.Module) -> nn.Module:
    """Weights in channels-last (NHWC) layout, on every device: cuDNN's bf16 convolutions and oneDNN's fp32
    CPU convolutions both run faster in it (on a 2-core CPU, bench/train_throughput.py's distillation step reads
    0.97x-0.98x of the NCHW reference without it, 1.17x-1.27x with it). Convolution outputs follow their
    weights' layout, so the whole network then runs channels-last."""
    return model.to(memory_format=torch.channels_last)


def input_layout(x: torch.Tensor) -> torch.Tensor:
    """A batch of images in the models' layout (channels_last), which spares every forward a conversion."""
    return x.contiguous(memory_format=torch.channels_last)


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


@dataclass
class StepOutput:
    """What one update leaves on the device: reading any of it is the caller's choice of when to wait."""

    loss: torch.Tensor  # 0-dim fp32, detached; may be non-finite (the update then ran on garbage)
    clean_correct: torch.Tensor | None  # 0-dim int64; None when the loss never ran S(step.x)
    robust_correct: torch.Tensor | None  # ... S(xa); None also for methods without an attack
    images: int


def attack_phase(student: nn.Module, method: Method, step: Step) -> torch.Tensor | None:
    """The method's inner maximisation, with the student's BN layers in the method's mode.

    `student` is the module to run (under DDP, the unwrapped one: the attack must not synchronise gradients).
    """
    student.train(method.bn_mode == "train")
    with autocast(step.x.device):
        return method.perturb(student, step)


def update_phase(student: nn.Module, method: Method, step: Step, xa: torch.Tensor | None,
                 optimizer: torch.optim.Optimizer) -> StepOutput:
    """Outer loss, backward and SGD step in train mode, without waiting for the device.

    The finiteness of the loss is not checked here (that would be a host sync before the backward): the
    trainer reads the losses every few steps and stops at the first non-finite one, before anything is saved.
    """
    student.train()
    recorder = LogitRecorder(student, step.x, xa)
    with autocast(step.x.device):
        loss = method.loss(recorder, step, xa)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()

    def correct(logits: torch.Tensor | None) -> torch.Tensor | None:
        return (logits.argmax(1) == step.y).sum() if logits is not None else None

    return StepOutput(loss.detach().float(), correct(recorder.clean_logits), correct(recorder.adversarial_logits),
                      len(step.y))
