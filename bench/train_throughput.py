"""Training throughput (images/s) of RSLAD steps, ResNet-18 student and WRN-34-10 teacher, through the engine's own
step functions: on the CPU, and on CUDA when present (bf16 autocast, channels-last), with the share of the time
spent in the inner attack (perturb) and in the outer update (the accuracy probe, loss, backward, SGD step).

    python bench/train_throughput.py [--batch 128] [--cpu-batch 32] [--steps 2] [--warmup 1] [--compile]

The CPU runs a smaller batch by default so that the script ends in a minute or two. Not a test: numbers depend
on the machine. Weights are random: throughput does not depend on them.
"""

from __future__ import annotations

import argparse
import time

import torch

from rdist.engine.schedule import Schedule, build_optimizer
from rdist.engine.step import attack_phase, channels_last, correct_counts, input_layout, update_phase
from rdist.methods import Batch, create_method
from rdist.models import create_model


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(device: torch.device, batch_size: int, steps: int, warmup: int, compile_: bool) -> dict[str, float]:
    torch.manual_seed(0)
    student = channels_last(create_model("resnet18").to(device), device)
    teacher = channels_last(create_model("wrn-34-10").to(device), device).eval().requires_grad_(False)
    optimizer, _ = build_optimizer(student, Schedule(1, (1,), 0.1, 2e-4, batch_size, None))
    model = torch.compile(student) if compile_ else student
    teacher = torch.compile(teacher) if compile_ else teacher
    method = create_method("rslad")
    generator = torch.Generator(device=device).manual_seed(0)
    x = input_layout(torch.rand(batch_size, 3, 32, 32, device=device))
    y = torch.randint(0, 10, (batch_size,), device=device)
    attack_s = update_s = 0.0
    for step in range(warmup + steps):
        batch = Batch(x, y, 1, 1, teacher, None, generator)
        synchronize(device)
        start = time.perf_counter()
        xa = attack_phase(model, method, batch)
        synchronize(device)
        middle = time.perf_counter()
        correct_counts(model, batch, xa)
        update_phase(model, method, batch, xa, optimizer)
        synchronize(device)
        if step >= warmup:  # warm-up: allocator, cuDNN autotuning, compilation
            attack_s += middle - start
            update_s += time.perf_counter() - middle
    total = attack_s + update_s
    return {"images_per_s": batch_size * steps / total, "attack": attack_s / total, "update": update_s / total,
            "step_s": total / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128, help="batch size on CUDA")
    parser.add_argument("--cpu-batch", type=int, default=32, help="batch size on the CPU")
    parser.add_argument("--steps", type=int, default=2, help="timed steps")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--compile", action="store_true", help="torch.compile student and teacher")
    parser.add_argument("--no-cpu", action="store_true", help="skip the CPU measurement")
    args = parser.parse_args()
    print(f"rslad step (10-step attack), resnet18 student, wrn-34-10 teacher, torch {torch.__version__}, "
          f"{torch.get_num_threads()} CPU threads")
    devices = ([] if args.no_cpu else [torch.device("cpu")]) + (
        [torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        batch = args.batch if device.type == "cuda" else args.cpu_batch
        r = measure(device, batch, args.steps, args.warmup, args.compile)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (fp32)"
        precision = " bf16" if device.type == "cuda" else ""
        print(f"{name + precision:>28}: batch {batch:4d}  {r['images_per_s']:8.1f} images/s  "
              f"{r['step_s']:7.3f} s/step  attack {r['attack']:.0%}  update {r['update']:.0%}")


if __name__ == "__main__":
    main()
