"""What a reproduction costs: FLOPs counted from the models' MACs and the method's own passes, and the GPU
hours they take at an assumed throughput.

The passes of one training step are counted, not assumed: one step of the method runs on tiny stand-in
models (tinycnn, two 8x8 images) with forward hooks that count each student and teacher call and whether
its gradient is taken. A forward pass costs 2 FLOPs per MAC, a forward pass whose gradient is taken 6
(the backward pass costs about twice the forward). The MACs are those of the real architectures at the
dataset's input size (`count_macs`, on the meta device: nothing is allocated).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from rdist.data import dataset_shape
from rdist.engine import TrainConfig
from rdist.engine.build import resolve_method
from rdist.engine.defaults import resolve_defaults
from rdist.engine.schedule import resolve_schedule
from rdist.engine.step import attack_phase, update_phase
from rdist.methods import Batch
from rdist.models import create_model
from rdist.report.profile import count_macs

# The assumption behind every "GPU hours": sustained bf16 throughput of an A100-class GPU on these
# convolutional networks, about a third of its 312 TFLOP/s peak. Not a measurement.
ASSUMED_TFLOPS = 100.0
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "digits": 1_437}
# Gradient steps per image of each AutoAttack component; Square costs forward queries. Every component but the
# first runs only on the images still robust, taken as the published AutoAttack fraction.
AA_COMPONENTS = {"apgd-ce": (100, 0), "apgd-t": (900, 0), "fab-t": (900, 0), "square": (0, 5000)}
AA_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
PGD20_STEPS = 20


@dataclass(frozen=True)
class Passes:
    """Calls per training step of one model: forward only, and forward whose gradient is taken."""

    forward: int = 0
    with_grad: int = 0

    def flops(self, macs: int) -> float:
        return 2.0 * macs * self.forward + 6.0 * macs * self.with_grad


def count_passes(config: TrainConfig) -> tuple[Passes, Passes]:
    """(student, teacher) passes of one step of `config`'s method, at its last epoch (every term active)."""
    config, _ = resolve_defaults(config)  # the dataset (and recipe) a config leaves to the paper
    method, _ = resolve_method(config)
    channels, classes, _ = dataset_shape(config.data)
    torch.manual_seed(0)
    student = create_model("tinycnn", num_classes=classes, in_channels=channels)
    teacher = create_model("tinycnn", num_classes=classes, in_channels=channels).eval() \
        if method.needs_teacher else None
    counts = {"student": [0, 0], "teacher": [0, 0]}

    def hook(role):
        def count(module, inputs, output):
            grad = torch.is_grad_enabled() and output.requires_grad
            counts[role][1 if grad else 0] += 1
        return count

    student.register_forward_hook(hook("student"))
    natural = None
    if teacher is not None:
        for p in teacher.parameters():
            p.requires_grad_(False)
        teacher.register_forward_hook(hook("teacher"))
    if method.needs_natural_teacher:
        natural = teacher
    x = torch.rand(2, channels, 8, 8)
    y = torch.tensor([0, 1 % classes])
    batch = Batch(x, y, epoch=1000, epochs=1000, teacher=teacher, natural_teacher=natural,
                  generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.SGD(student.parameters(), lr=0.0)
    xa = attack_phase(student, method, batch)
    update_phase(student, method, batch, xa, optimizer)
    return Passes(*counts["student"]), Passes(*counts["teacher"])


@functools.lru_cache(maxsize=None)
def model_macs(arch: str, data: str) -> int:
    channels, classes, size = dataset_shape(data)
    with torch.device("meta"):
        model = create_model(arch, num_classes=classes, in_channels=channels)
    return count_macs(model, (channels, size, size))


def training_flops(config: TrainConfig, teacher_arch: str | None) -> float:
    """FLOPs of a whole training run of `config`: every step, and the evaluation of every epoch."""
    method, recipe = resolve_method(config)
    schedule = resolve_schedule(config, recipe)
    student_passes, teacher_passes = count_passes(config)
    student_macs = model_macs(config.student, config.data)
    per_image = student_passes.flops(student_macs)
    if teacher_arch is not None:
        per_image += teacher_passes.flops(model_macs(teacher_arch, config.data))
    images = TRAIN_IMAGES.get(config.data, 50_000)
    eval_n = config.eval_n or 1000
    per_eval = eval_n * (2.0 * student_macs + PGD20_STEPS * 6.0 * student_macs)
    evaluations = schedule.epochs // config.eval_every
    return schedule.epochs * images * per_image + evaluations * per_eval


def evaluation_flops(arch: str, data: str, n: int, aa: str, robust_fraction: float) -> float:
    """FLOPs of clean + PGD-20 + the AutoAttack column on n images (see AA_COMPONENTS)."""
    macs = model_macs(arch, data)
    components = AA_STANDARD if ":" not in aa else tuple(aa.split(":", 1)[1].split("+"))
    per_image = 2.0 * macs + PGD20_STEPS * 6.0 * macs
    for i, name in enumerate(components):
        steps, queries = AA_COMPONENTS.get(name, (100, 0))
        share = 1.0 if i == 0 else robust_fraction
        per_image += share * (steps * 6.0 * macs + queries * 2.0 * macs)
    return n * per_image


def gpu_hours(flops: float, tflops: float = ASSUMED_TFLOPS) -> float:
    return flops / (tflops * 1e12) / 3600
