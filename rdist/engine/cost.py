"""What a run costs, counted before it starts: one FLOP count, two ways to turn it into time.

The count: each model's passes (student, teachers, companions) in one training step of the method (`count_passes`,
counted on the engine's own step, not assumed) times that model's MACs at the dataset's input size: 2 FLOPs per MAC
forward, 4 when the input's gradient is taken (an attack step), 6 when the weights' is too (the update). A run
(`run_cost`) is that per image of every training image of every epoch, plus the clean and PGD-20 evaluation at the
end of epochs; a robustness evaluation (`evaluation_flops`) is counted the same way.

The two views of one count:
- at the dense matmul rate this device reaches, measured now (`matmul_flops_per_s`): the `rdist distill`
  header's "at least", a lower bound since convolutions and small batches run below that rate;
- at an assumed throughput (`gpu_hours`, ASSUMED_TFLOPS): `rdist reproduce --list`, for a GPU the user may not
  have.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rdist.artifact import read_metadata
from rdist.attacks.autoattack import AA_COMPONENTS, AA_STANDARD
from rdist.data import dataset_shape, train_size
from rdist.data.mixed import mixed_epoch
from rdist.engine.build import resolve_method, validation_size
from rdist.engine.companions import plan_companions
from rdist.engine.config import TrainConfig, fill_paper_defaults
from rdist.engine.schedule import resolve_schedule
from rdist.engine.step import attack_phase, update_phase
from rdist.methods import Method, Step
from rdist.models import arch_macs, create_model, known_architecture
from rdist.teachers.catalogue import TEACHERS, teacher_dataset

# The assumption behind every "GPU hours": sustained bf16 throughput of an A100-class GPU on these
# convolutional networks, about a third of its 312 TFLOP/s peak. Not a measurement.
ASSUMED_TFLOPS = 100.0
PGD20_STEPS = 20
EVAL_N = 1000  # images of the per-epoch evaluation when the run does not say (build_run's default on CUDA)


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


@dataclass(frozen=True)
class RunCost:
    """The FLOPs of one training run."""

    steps: int  # optimiser steps
    batch_size: int
    image_flops: float  # of one training step, per image: every pass of the student, the teachers and companions
    images: int  # training images over the whole run (an epoch's last batch may be short)
    eval_flops: float  # the clean and PGD-20 evaluations at the end of epochs

    @property
    def flops_per_step(self) -> float:
        """FLOPs of one step on a full batch."""
        return self.image_flops * self.batch_size

    @property
    def train_flops(self) -> float:
        return self.images * self.image_flops

    @property
    def flops(self) -> float:
        """Training and its evaluations."""
        return self.train_flops + self.eval_flops


def count_passes(method: Method, channels: int, classes: int, epochs: int) -> dict[str, Passes]:
    """The passes of one training step of `method`, per model: "student", each teacher role and each companion role.

    Counted, not assumed: one step of the engine (`attack_phase`, `update_phase`) runs on tiny probe models
    (tinycnn, two 8x8 images) with forward hooks. The counts do not depend on the architecture. The step is one
    of the last epoch, past any warm-up.
    """
    with torch.random.fork_rng(devices=[]):  # the probes' random weights leave the caller's RNG as it was
        probes = {role: create_model("tinycnn", num_classes=classes, in_channels=channels)
                  for role in ("student", *method.teachers, *method.companions)}
        x = torch.rand(2, channels, 8, 8)
    counts = {role: {"forward": 0, "input_grad": 0, "weight_grad": 0} for role in probes}
    phase = {"update": False}

    def counter(role: str):
        def hook(module: nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if not output.requires_grad:  # no_grad, or nothing upstream needs a gradient
                counts[role]["forward"] += 1
            elif phase["update"] and role in trained:
                counts[role]["weight_grad"] += 1
            else:
                counts[role]["input_grad"] += 1
        return hook

    trained = ("student", *method.companions)
    for role, probe in probes.items():
        probe.register_forward_hook(counter(role))
        if role not in trained:
            probe.eval().requires_grad_(False)
    student, companions = probes["student"], {role: probes[role] for role in method.companions}
    method.reset_state(classes)
    batch = Step(x, torch.arange(2) % classes, epochs, epochs, {role: probes[role] for role in method.teachers},
                 torch.Generator().manual_seed(0), companions={role: c.eval() for role, c in companions.items()},
                 sums=method.new_sums(classes))
    xa = attack_phase(student, method, batch)
    phase["update"] = True
    batch.companions = {role: c.train() for role, c in companions.items()}
    update_phase(student, method, batch, xa, torch.optim.SGD(student.parameters(), lr=0.0),
                 others=[torch.optim.SGD(c.parameters(), lr=0.0) for c in companions.values()])
    return {role: Passes(**c) for role, c in counts.items()}


@functools.lru_cache(maxsize=None)
def model_macs(arch: str, data: str) -> int:
    """MACs per image of architecture `arch` built for dataset `data`."""
    channels, classes, size = dataset_shape(data)
    return arch_macs({"name": arch, "num_classes": classes, "in_channels": channels}, (channels, size, size))


def teacher_macs(spec: str | None, data: str) -> int | None:
    """MACs per image of the teacher `spec` names (a RobustBench name or an artifact file), when its architecture
    is known without loading it; None otherwise."""
    if spec is None:
        return 0
    entry = TEACHERS.get((spec, teacher_dataset(spec, data)))
    if entry is not None:
        return model_macs(entry.arch, entry.dataset)
    path = Path(spec).expanduser()
    if path.suffix == ".safetensors" and path.is_file():
        channels, _, size = dataset_shape(data)
        return arch_macs(read_metadata(path)["arch"], (channels, size, size))
    return None


def run_cost(config: TrainConfig, teachers: dict[str, str] | None = None) -> RunCost:
    """The FLOPs of the run `config` describes (its paper defaults filled in), without loading a weight or an
    image.

    A teacher's MACs come from `teachers` (role -> architecture, for one not trained yet), else from the model
    `config.teachers` names (`teacher_macs`); a teacher known by neither counts as free.
    """
    config, _ = fill_paper_defaults(config)
    method, recipe = resolve_method(config)
    schedule = resolve_schedule(config, recipe)
    channels, classes, _ = dataset_shape(config.data)
    n = train_size(config.data)
    n_train = n if config.select_on == "test" else n - validation_size(n, config.val_size)
    # An epoch is one pass over the real images; with generated ones, each batch holds fewer of them and is filled up.
    fraction = config.generated_fraction or 0.0
    per_epoch, epoch_images = mixed_epoch(n_train, schedule.batch_size, fraction, drop_last=config.compile)
    steps, images, epochs = schedule.epochs * per_epoch, schedule.epochs * epoch_images, schedule.epochs
    if config.max_steps is not None and config.max_steps < steps:  # a cut run: whole epochs, then part of one
        whole, rest = divmod(config.max_steps, per_epoch)
        steps, images, epochs = config.max_steps, whole * epoch_images + rest * schedule.batch_size, whole + (rest > 0)
    teachers = teachers or {}
    macs = {"student": model_macs(config.student, config.data),
            **{role: model_macs(teachers[role], config.data) if role in teachers
               else teacher_macs(config.teachers.get(role), config.data) for role in method.teachers},
            **{role: model_macs(plan.model, config.data) if known_architecture(plan.model)
               else teacher_macs(plan.model, config.data)
               for role, plan in plan_companions(config, method, schedule, recipe).items()}}
    passes = count_passes(method, channels, classes, schedule.epochs)
    image_flops = sum(passes[role].flops(macs[role]) for role in passes if macs[role] is not None)
    # The trainer evaluates every eval_every-th epoch and the last one it reaches.
    evaluations = math.ceil(epochs / config.eval_every)
    eval_image = Passes(forward=1).flops(macs["student"]) + Passes(input_grad=PGD20_STEPS).flops(macs["student"])
    return RunCost(steps, schedule.batch_size, image_flops, images,
                   evaluations * (config.eval_n or EVAL_N) * eval_image)


def evaluation_flops(arch: str, data: str, n: int, aa: str, robust_fraction: float) -> float:
    """FLOPs of clean + PGD-20 + the AutoAttack column `aa` on n images. Every AutoAttack component but the first
    runs only on the images still robust, taken as `robust_fraction` (the published AutoAttack accuracy)."""
    macs = model_macs(arch, data)
    components = AA_STANDARD if ":" not in aa else tuple(aa.split(":", 1)[1].split("+"))
    per_image = Passes(forward=1, input_grad=PGD20_STEPS).flops(macs)
    for i, name in enumerate(components):
        steps, queries = AA_COMPONENTS[name]
        share = 1.0 if i == 0 else robust_fraction
        per_image += share * Passes(forward=queries, input_grad=steps).flops(macs)
    return n * per_image


def gpu_hours(flops: float, tflops: float = ASSUMED_TFLOPS) -> float:
    """`flops` as hours at `tflops` TFLOP/s sustained."""
    return flops / (tflops * 1e12) / 3600


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
