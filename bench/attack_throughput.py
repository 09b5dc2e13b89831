"""Attack throughput of PGD-20 (images/s) for a CIFAR ResNet-18: on the CPU, and on CUDA when present.

    python bench/attack_throughput.py [--batch 128] [--batches 2] [--arch resnet18]

Prints one line per device. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import time

import torch

from rdist.attacks import PGD
from rdist.models import create_model


def measure(device: torch.device, arch: str, batch: int, batches: int, channels_last: bool) -> float:
    model = create_model(arch, num_classes=10).to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    attack = PGD(model, 8 / 255, generator=torch.Generator(device=device).manual_seed(0))
    attack(x, y)  # warm-up: allocator, cuDNN autotuning
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(batches):
        attack(x, y)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * batches / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--batches", type=int, default=2)
    args = parser.parse_args()
    print(f"pgd20 on {args.arch}, batch {args.batch}, torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    for device in devices:
        rate = measure(device, args.arch, args.batch, args.batches, channels_last=device.type == "cuda")
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        print(f"{name:>24}: {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
