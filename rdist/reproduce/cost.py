"""What a reproduction costs: FLOPs counted from the models' MACs and the method's own passes, and the GPU
hours they take at an assumed throughput.

The passes of one training step are counted, not assumed, by `rdist.report.profile.count_passes` (the same
count the `rdist distill` header's estimate uses): 2 FLOPs per MAC forward, 4 when the input's gradient is taken
(an attack step), 6 when the weights' is too (the update). The MACs are those of the real architectures at the
dataset's input size (`count_macs`, on the meta device: nothing is allocated).
"""

from __future__ import annotations

import functools

import torch

from rdist.data import dataset_shape
from rdist.engine import TrainConfig
from rdist.engine.build import resolve_method
from rdist.engine.config import fill_paper_defaults
from rdist.engine.schedule import resolve_schedule
from rdist.methods import ROBUST
from rdist.models import create_model
from rdist.report.profile import Passes, count_macs, count_passes

# The assumption behind every "GPU hours": sustained bf16 throughput of an A100-class GPU on these
# convolutional networks, about a third of its 312 TFLOP/s peak. Not a measurement.
ASSUMED_TFLOPS = 100.0
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "svhn": 73_257, "digits": 1_437}
# Gradient steps per image of each AutoAttack component; Square costs forward queries. Every component but the
# first runs only on the images still robust, taken as the published AutoAttack fraction.
AA_COMPONENTS = {"apgd-ce": (100, 0), "apgd-t": (900, 0), "fab-t": (900, 0), "square": (0, 5000)}
AA_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
PGD20_STEPS = 20


@functools.lru_cache(maxsize=None)
def model_macs(arch: str, data: str) -> int:
    channels, classes, size = dataset_shape(data)
    with torch.device("meta"):
        model = create_model(arch, num_classes=classes, in_channels=channels)
    return count_macs(model, (channels, size, size))


def training_flops(config: TrainConfig, teacher_arch: str | None) -> float:
    """FLOPs of a whole training run of `config`: every step, and the evaluation of every epoch."""
    config, _ = fill_paper_defaults(config)  # the dataset (and recipe) a config leaves to the paper
    method, recipe = resolve_method(config)
    schedule = resolve_schedule(config, recipe)
    channels, classes, _ = dataset_shape(config.data)
    passes = count_passes(method, channels, classes, schedule.epochs)
    student_macs = model_macs(config.student, config.data)
    per_image = passes["student"].flops(student_macs)
    if teacher_arch is not None:
        per_image += passes[ROBUST].flops(model_macs(teacher_arch, config.data))
    images = TRAIN_IMAGES.get(config.data, 50_000)
    eval_n = config.eval_n or 1000
    per_eval = eval_n * (Passes(forward=1).flops(student_macs) + Passes(input_grad=PGD20_STEPS).flops(student_macs))
    evaluations = schedule.epochs // config.eval_every
    return schedule.epochs * images * per_image + evaluations * per_eval


def evaluation_flops(arch: str, data: str, n: int, aa: str, robust_fraction: float) -> float:
    """FLOPs of clean + PGD-20 + the AutoAttack column on n images (see AA_COMPONENTS)."""
    macs = model_macs(arch, data)
    components = AA_STANDARD if ":" not in aa else tuple(aa.split(":", 1)[1].split("+"))
    per_image = Passes(forward=1, input_grad=PGD20_STEPS).flops(macs)
    for i, name in enumerate(components):
        steps, queries = AA_COMPONENTS.get(name, (100, 0))
        share = 1.0 if i == 0 else robust_fraction
        per_image += share * Passes(forward=queries, input_grad=steps).flops(macs)
    return n * per_image


def gpu_hours(flops: float, tflops: float = ASSUMED_TFLOPS) -> float:
    return flops / (tflops * 1e12) / 3600
