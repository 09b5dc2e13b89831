"""Where models run and in what form: the device, the autocast precision and the memory layout.

Training and evaluation share these, so they sit below both: `rdist attack` needs no part of the training
engine to put a model on a GPU in channels-last layout under bf16 autocast.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from rdist.errors import RdistError

PRECISIONS = ("fp32", "bf16")  # what an evaluation may run in (`precision_context`)


def default_device(name: str | None = None) -> torch.device:
    """The device `name` ("cpu", "cuda", "cuda:1"), checked to exist; without a name, CUDA when present."""
    if not name:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RdistError(f"cannot read device '{name}': use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RdistError(f"--device {name} asks for CUDA but no CUDA GPU is visible; use --device cpu")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where `model` takes its inputs: its `device` attribute when it has one (a model that holds no weights of
    its own, such as an ONNX Runtime session), else the device of its first parameter or buffer (the CPU for a
    model with neither)."""
    device = getattr(model, "device", None)
    if isinstance(device, torch.device):
        return device
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def autocast(device: torch.device):
    """Training's forward passes: bf16 autocast on CUDA, plain fp32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_context(device: torch.device, precision: str):
    """An evaluation's forward passes: fp32 (the honest protocol, the default), or bf16 autocast: faster on GPUs,
    at a cost in fidelity that bench/eval_precision.py measures (the inputs and the perturbation stay fp32, the
    eps-ball check too)."""
    if precision not in PRECISIONS:
        raise RdistError(f"unknown precision '{precision}': use {' or '.join(PRECISIONS)}")
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@contextlib.contextmanager
def cudnn_autotune(device: torch.device) -> Iterator[None]:
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
    """A batch of images in the layout `channels_last` gives the models, which spares every forward a
    conversion."""
    return x.contiguous(memory_format=torch.channels_last)


def model_layout(model: nn.Module) -> torch.memory_format:
    """channels_last when the model's convolutions hold their weights so, else the default layout: inputs in
    the model's own layout spare every forward a conversion. The first weight whose two layouts differ decides
    (a one-channel 3x3 kernel, say, is both)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            weight = module.weight
            if weight.is_contiguous() != weight.is_contiguous(memory_format=torch.channels_last):
                return torch.contiguous_format if weight.is_contiguous() else torch.channels_last
    return torch.contiguous_format
