"""What a model costs to ship: parameters, multiply-accumulates at its input size, and latency per image."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rdist.artifact import read_metadata
from rdist import onnx as onnx_runtime
from rdist.data import dataset_shape, train_size
from rdist.device import default_device, model_device
from rdist.engine import TrainConfig
from rdist.engine.build import resolve_method, validation_size
from rdist.engine.schedule import resolve_schedule
from rdist.engine.step import attack_phase, update_phase
from rdist.methods import Step, Method
from rdist.models import create_model
from rdist.teachers.catalogue import TEACHERS, teacher_dataset

WARMUP_RUNS = 3
TIMED_RUNS = 10
# One thread: a number that does not depend on how many cores the machine has or how busy they are
# (with more threads than free cores, a forward pass of a tiny model waits milliseconds on a spinning peer).
CPU_THREADS = 1


def format_count(value: float) -> str:
    """A parameter, MAC or FLOP count to three significant digits: 24.1k, 1.79M, 556M, 4.02T."""
    for factor, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of one forward pass on one image of `input_shape` (C, H, W).

    FlopCounterMode counts the matrix products and convolutions, at 2 FLOPs per multiply-accumulate;
    element-wise layers (BN, ReLU, pooling) are not counted, as is usual for MACs.
    """
    x = torch.zeros(1, *input_shape, device=model_device(model))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def latency_ms(model: nn.Module, input_shape: Sequence[int], device: torch.device | str,
               warmup: int = WARMUP_RUNS, runs: int = TIMED_RUNS) -> float:
    """Median milliseconds of one forward pass at batch size 1 on `device`, after `warmup` untimed passes.

    The model is moved to `device` and stays there. The median ignores the odd run slowed by another process.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.rand(1, *input_shape, device=device)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            synchronize()
            started = time.perf_counter()
            model(x)
            synchronize()
            if i >= warmup:
                times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def _cpu_latency_ms(model: nn.Module, input_shape: Sequence[int], cpu_threads: int) -> float:
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads)
    try:
        return latency_ms(model, input_shape, "cpu")
    finally:
        torch.set_num_threads(threads)


def profile_model(model: nn.Module, input_shape: Sequence[int], cpu_threads: int = CPU_THREADS,
                  all_threads: bool = False) -> dict:
    """Parameters, MACs, and latency per image on the CPU (with `cpu_threads` threads; with `all_threads`
    also on every core, as "cpu_all") and, when CUDA is available, on the GPU. The model ends on the CPU.
    """
    model = model.to("cpu").eval()
    profile = {"params": count_parameters(model), "macs": count_macs(model, input_shape),
               "latency_ms": {"cpu": round(_cpu_latency_ms(model, input_shape, cpu_threads), 4)},
               "cpu_threads": cpu_threads}
    if all_threads:
        profile["latency_ms"]["cpu_all"] = round(_cpu_latency_ms(model, input_shape, onnx_runtime.all_threads()), 4)
        profile["cpu_threads_all"] = onnx_runtime.all_threads()
    if torch.cuda.is_available():
        profile["latency_ms"]["cuda"] = round(latency_ms(model, input_shape, "cuda"), 4)
        model.to("cpu")
    return profile


@dataclass(frozen=True)
class RunEstimate:
    """What a training run costs, counted before it starts: FLOPs from the models' MACs, time at the device's
    measured matmul rate (a lower bound: convolutions and small batches run below it)."""

    steps: int
    flops_per_step: float
    device: str
    flops_per_s: float  # the device's measured dense matmul rate

    @property
    def seconds(self) -> float:
        return self.steps * self.flops_per_step / self.flops_per_s


@dataclass(frozen=True)
class Passes:
    """One model's calls in one training step, by what their backward pass costs: none (`forward`), the input's
    gradient only (`input_grad`: the inner attack, about twice a forward) or the weights' too (`weight_grad`: the
    student's update, about three times)."""

    forward: int = 0
    input_grad: int = 0
    weight_grad: int = 0

    def flops(self, macs: float) -> float:
        """FLOPs per image: 2 per MAC forward, 4 with the input's gradient, 6 with the weights' as well."""
        return 2.0 * macs * (self.forward + 2 * self.input_grad + 3 * self.weight_grad)


def count_passes(method: Method, channels: int, classes: int, epochs: int) -> dict[str, Passes]:
    """The passes of one training step of `method`, per model: "student" and each teacher role.

    Counted, not assumed: one step of the engine (`attack_phase`, `update_phase`) runs on tiny probe models
    (tinycnn, two 8x8 images) with forward hooks. The counts do not depend on the architecture. The step is one
    of the last epoch, past any warm-up.
    """
    with torch.random.fork_rng(devices=[]):  # the probes' random weights leave the caller's RNG as it was
        probes = {role: create_model("tinycnn", num_classes=classes, in_channels=channels)
                  for role in ("student", *method.teachers)}
        x = torch.rand(2, channels, 8, 8)
    counts = {role: {"forward": 0, "input_grad": 0, "weight_grad": 0} for role in probes}
    phase = {"update": False}

    def counter(role: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if not output.requires_grad:  # no_grad, or nothing upstream needs a gradient
                counts[role]["forward"] += 1
            elif phase["update"] and role == "student":
                counts[role]["weight_grad"] += 1
            else:
                counts[role]["input_grad"] += 1
        return hook

    for role, probe in probes.items():
        probe.register_forward_hook(counter(role))
        if role != "student":
            probe.eval().requires_grad_(False)
    student = probes["student"]
    batch = Step(x, torch.arange(2) % classes, epochs, epochs,
                  {role: probes[role] for role in method.teachers}, torch.Generator().manual_seed(0))
    xa = attack_phase(student, method, batch)
    phase["update"] = True
    update_phase(student, method, batch, xa, torch.optim.SGD(student.parameters(), lr=0.0))
    return {role: Passes(**c) for role, c in counts.items()}


def estimate_run(config: TrainConfig) -> RunEstimate:
    """The cost of the run `config` describes (after `fill_paper_defaults`), without loading a weight or an image.

    Per image and step: each pass of the student and the teachers the method makes (`count_passes`) times that
    model's MACs (`Passes.flops`). A teacher named neither by RobustBench name nor by artifact file counts as free.
    """
    method, recipe = resolve_method(config)
    schedule = resolve_schedule(config, recipe)
    channels, classes, size = dataset_shape(config.data)
    n = train_size(config.data)
    n_train = n if config.select_on == "test" else n - validation_size(n, config.val_size)
    steps = schedule.epochs * math.ceil(n_train / schedule.batch_size)
    if config.max_steps is not None:
        steps = min(steps, config.max_steps)
    shape = (channels, size, size)
    macs = {"student": _arch_macs({"name": config.student, "num_classes": classes, "in_channels": channels}, shape),
            **{role: _teacher_macs(config.teachers.get(role), config.data, shape) for role in method.teachers}}
    passes = count_passes(method, channels, classes, schedule.epochs)
    flops = sum(passes[role].flops(macs[role]) for role in passes if macs[role] is not None)
    device = default_device(config.device)
    return RunEstimate(steps, flops * schedule.batch_size, str(device), matmul_flops_per_s(device))


def _arch_macs(arch: dict[str, Any], shape: tuple[int, int, int]) -> int:
    """MACs per image of architecture `arch` (create_model's arguments), built without memory on the meta device."""
    with torch.device("meta"):
        model = create_model(arch["name"], **{k: v for k, v in arch.items() if k != "name" and v is not None})
    return count_macs(model, shape)


def _teacher_macs(spec: str | None, data: str, shape: tuple[int, int, int]) -> int | None:
    """MACs per image of the teacher `spec` names, when its architecture is known without loading it."""
    if spec is None:
        return 0
    entry = TEACHERS.get((spec, teacher_dataset(spec, data)))
    if entry is not None:
        return _arch_macs({"name": entry.arch, "num_classes": entry.num_classes, "in_channels": 3}, shape)
    path = Path(spec).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        return _arch_macs(read_metadata(path)["arch"], shape)
    return None


def matmul_flops_per_s(device: torch.device, n: int = 1024, runs: int = 5) -> float:
    """The dense matrix-product rate `device` reaches, measured: fp32 on the CPU, bf16 (the training autocast)
    on CUDA. The best of `runs`, after one warm-up."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.rand(n, n, device=device, dtype=dtype)
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    best = math.inf
    for i in range(runs + 1):
        synchronize()
        started = time.perf_counter()
        a @ a
        synchronize()
        if i:
            best = min(best, time.perf_counter() - started)
    return 2 * n ** 3 / best


def format_duration(seconds: float) -> str:
    """'45 s', '12 min', '3.4 h', '2.1 days'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def profile_onnx(path: str | Path, meta: dict, input_shape: Sequence[int], cpu_threads: int = CPU_THREADS) -> dict:
    """Parameters, MACs and ONNX Runtime latency per image (batch 1, on `cpu_threads` and on all CPU threads).

    Counts are those of the architecture the file was exported from (int8 rounding changes none); a file rdist
    did not write counts the elements of its stored tensors and has no MAC count.
    """
    if meta.get("foreign"):
        params, macs = onnx_runtime.initializer_count(path), None
    else:
        architecture = create_model(**meta["arch"])
        params, macs = count_parameters(architecture), count_macs(architecture, input_shape)
    every = onnx_runtime.all_threads()
    return {"params": params, "macs": macs, "cpu_threads": cpu_threads, "cpu_threads_all": every,
            "latency_ms": {"cpu": round(onnx_runtime.latency_ms(path, input_shape, cpu_threads), 4),
                           "cpu_all": round(onnx_runtime.latency_ms(path, input_shape, every), 4)}}
