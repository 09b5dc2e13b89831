"""One training step, in the two phases every method has: the inner attack and the outer update.

The engine knows nothing about a method beyond `bn_mode`, `perturb` and `loss`. On CUDA the forward
passes run under bf16 autocast; the perturbation stays an fp32 tensor (the attack steps on fp32 inputs),
BN running statistics and the SGD state are fp32, and the losses are computed in fp32 (cross-entropy by
autocast's own rules, the KL helper explicitly).
"""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from rdist.methods import Batch, Method

METRIC_IMAGES = 64  # training accuracy is measured on this many images of each batch: a cheap running estimate


def autocast(device: torch.device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def channels_last(model: nn.Module, device: torch.device) -> nn.Module:
    """On CUDA, weights in channels-last layout (faster bf16 convolutions); unchanged on the CPU."""
    return model.to(memory_format=torch.channels_last) if device.type == "cuda" else model


def input_layout(x: torch.Tensor) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cuda" else x


def attack_phase(student: nn.Module, method: Method, batch: Batch) -> torch.Tensor | None:
    """The method's inner maximisation, with the student's BN layers in the method's mode."""
    student.train(method.bn_mode == "train")
    with autocast(batch.x.device):
        return method.perturb(student, batch)


def update_phase(student: nn.Module, method: Method, batch: Batch, xa: torch.Tensor | None,
                 optimizer: torch.optim.Optimizer) -> float:
    """Outer loss, backward and SGD step in train mode; returns the loss. A non-finite loss is returned
    without stepping, so the weights stay those of the last finite step."""
    student.train()
    with autocast(batch.x.device):
        loss = method.loss(student, batch, xa)
    value = loss.item()
    if not math.isfinite(value):
        return value
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return value


@torch.no_grad()
def correct_counts(student: nn.Module, batch: Batch, xa: torch.Tensor | None) -> tuple[int, int | None, int]:
    """(clean correct, adversarial correct or None, images) on the first METRIC_IMAGES of the batch, in eval
    mode so that measuring never moves the BN statistics."""
    student.eval()
    x, y = batch.x[:METRIC_IMAGES], batch.y[:METRIC_IMAGES]
    with autocast(x.device):
        clean = int((student(x).argmax(1) == y).sum())
        robust = int((student(xa[:METRIC_IMAGES]).argmax(1) == y).sum()) if xa is not None else None
    return clean, robust, len(y)
