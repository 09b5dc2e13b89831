"""Training throughput (images/s): rdist's step against the same step written the way the official codes write it.

    python bench/train_throughput.py [--device cpu|cuda] [--methods rslad,adaad] [--student resnet18]
        [--teacher wrn-34-10] [--batch 128] [--steps 4] [--rounds 2] [--compile] [--json FILE]

Defaults by device. CUDA: the issue's case, ResNet-18 student <- WRN-34-10 teacher, batch 128, 2 rounds of 4 steps.
CPU: ResNet-18 student <- ResNet-18 teacher, batch 16, 4 rounds of 1 step (about 5 minutes on one core). A
WRN-34-10 costs about 11 ResNet-18s; AdaAD runs it forward and backward at every attack step, which on one CPU
core is minutes per batch of 16. The student stays the issue's ResNet-18: on tiny models the step is a few
milliseconds of per-operation overhead, and the ratio says more about the machine's noise than about the step.

rdist: the engine's own step functions (`attack_phase`, `update_phase`) on batches drawn and augmented on the
device (`Batches`), channels_last models and inputs (on the CPU too: oneDNN's convolutions are faster so), bf16
autocast on CUDA, the loss and accuracy left on the device and read once per block of steps, and optionally
torch.compile.
reference: the plain way, as the official RSLAD and AdaAD scripts do it: fp32, NCHW, a torch DataLoader that
crops and flips each image on the CPU, `.to(device)` per batch, the teacher in fp32, `loss.item()` every step,
the outer loss computed term by term as its formula reads.

Both run the same models, batch, attack (10 steps by default) and loss, in alternating blocks of `--steps` steps
(`--rounds` of each, after `--warmup` untimed steps of each), so that a machine whose speed drifts (a shared CPU)
affects both alike. Prints images/s of each (wall clock), the ratio, and seconds per 50,000-image epoch
extrapolated; on the CPU also the ratio of process CPU time per image, which other jobs on a shared machine do not
inflate. Weights are random: throughput does not depend on them. Not a test: numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from rdist.data import Batches
from rdist.device import channels_last, cudnn_autotune, input_layout
from rdist.engine.schedule import Schedule, build_optimizer
from rdist.engine.step import attack_phase, update_phase
from rdist.engine.totals import EpochTotals
from rdist.methods import Step, create_method
from rdist.models import create_model

EPOCH_IMAGES = 50_000
EPS, STEP_SIZE = 8 / 255, 2 / 255


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class CroppedImages(Dataset):
    """CIFAR-style per-image augmentation on the CPU: 4-pixel zero-padded random crop, random flip."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        image = F.pad(self.images[i].float() / 255, (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        image = image[:, top:top + 32, left:left + 32]
        if torch.rand(()) < 0.5:
            image = image.flip(2)
        return image, self.labels[i]


def kl_batchmean(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student_logits, dim=1), F.softmax(teacher_logits, dim=1), reduction="batchmean")


def reference_attack(student, x: torch.Tensor, target, steps: int) -> torch.Tensor:
    """Signed-gradient steps on KL(target(xa) || student(xa)), from x + 0.001 N(0, 1), student in eval mode."""
    student.eval()
    xa = x.detach() + 0.001 * torch.randn_like(x)
    for _ in range(steps):
        xa.requires_grad_(True)
        loss = F.kl_div(F.log_softmax(student(xa), dim=1), F.softmax(target(xa), dim=1), reduction="sum")
        grad, = torch.autograd.grad(loss, [xa])
        xa = torch.min(torch.max(xa.detach() + STEP_SIZE * grad.sign(), x - EPS), x + EPS).clamp(0, 1)
    student.train()
    return xa.detach()


def reference_step(method: str, student, teacher, optimizer, x, y, steps: int) -> float:
    if method == "rslad":
        with torch.no_grad():
            teacher_clean = teacher(x)
        xa = reference_attack(student, x, lambda xa: teacher_clean, steps)
        loss = 0.1 * (5 / 6 * kl_batchmean(student(xa), teacher_clean)
                      + 1 / 6 * kl_batchmean(student(x), teacher_clean))
    else:  # adaad: the teacher re-evaluated at every iterate, its gradient flowing to xa
        alpha = 1.0
        xa = reference_attack(student, x, teacher, steps)
        with torch.no_grad():
            teacher_adv, teacher_clean = teacher(xa), teacher(x)
        loss = 0.1 * (alpha * kl_batchmean(student(xa), teacher_adv)
                      + (1 - alpha) * kl_batchmean(student(x), teacher_clean))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


class Contender:
    """One way of training: a student of its own (same initial weights), a teacher, an optimiser, a loader."""

    def __init__(self, name: str, args, device: torch.device, images: torch.Tensor, labels: torch.Tensor):
        self.name, self.args, self.device = name, args, device
        self.seconds = self.cpu_seconds = 0.0  # wall clock, and this process's CPU time, of the timed blocks
        self.images = 0
        torch.manual_seed(0)
        student = create_model(args.student).to(device)
        teacher = create_model(args.teacher).to(device).eval().requires_grad_(False)
        schedule = Schedule(1, (1,), 0.1, 2e-4, args.batch, None)
        if name == "rdist":
            student, teacher = channels_last(student), channels_last(teacher)
            self.optimizer, _ = build_optimizer(student, schedule)
            compile_ = (lambda m: torch.compile(m, backend=args.compile_backend)) if args.compile else (lambda m: m)
            self.student, self.teacher = compile_(student), compile_(teacher)
            self.batches = Batches(images.to(device), labels.to(device), args.batch, shuffle=True, augment=True,
                                   drop_last=True)
            self.generator = torch.Generator(device=device).manual_seed(0)
        else:
            self.student, self.teacher = student, teacher
            self.optimizer, _ = build_optimizer(student, schedule)
            self.loader = DataLoader(CroppedImages(images, labels), batch_size=args.batch, shuffle=True,
                                     drop_last=True, num_workers=args.workers,
                                     pin_memory=device.type == "cuda", persistent_workers=args.workers > 0)

    def block(self, method: str, steps: int, timed: bool) -> None:
        synchronize(self.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        if self.name == "rdist":
            rdist_method = create_method(method, eps=EPS, step_size=STEP_SIZE, attack_steps=self.args.attack_steps)
            totals = EpochTotals(0.1, steps, self.device)
            for (x, y), _ in zip(self.batches, range(steps)):
                batch = Step(input_layout(x), y, 1, 1, {"robust": self.teacher}, self.generator)
                xa = attack_phase(self.student, rdist_method, batch)
                totals.add(update_phase(self.student, rdist_method, batch, xa, self.optimizer))
            totals.read()  # the one wait of the block, as the trainer reads once every report_every steps
        else:
            for (x, y), _ in zip(self.loader, range(steps)):
                x, y = x.to(self.device), y.to(self.device)
                reference_step(method, self.student, self.teacher, self.optimizer, x, y, self.args.attack_steps)
        synchronize(self.device)
        if timed:
            self.seconds += time.perf_counter() - start
            self.cpu_seconds += time.process_time() - cpu_start
            self.images += steps * self.args.batch

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


def measure(method: str, args, device: torch.device) -> dict[str, float]:
    torch.manual_seed(0)
    n = args.batch * max(args.steps, args.warmup)
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    contenders = [Contender(name, args, device, images, labels) for name in ("rdist", "reference")]
    for contender in contenders:  # warm-up: allocator, cuDNN autotuning, compilation, loader workers
        contender.block(method, args.warmup, timed=False)
    for round_ in range(args.rounds):
        for contender in contenders if round_ % 2 == 0 else contenders[::-1]:
            contender.block(method, args.steps, timed=True)
    rdist, reference = contenders
    figures = {"rdist_images_per_s": round(rdist.images_per_s, 2),
               "reference_images_per_s": round(reference.images_per_s, 2),
               "ratio": round(rdist.images_per_s / reference.images_per_s, 3),
               "rdist_epoch_s": round(EPOCH_IMAGES / rdist.images_per_s, 1),
               "reference_epoch_s": round(EPOCH_IMAGES / reference.images_per_s, 1)}
    if device.type == "cpu":  # both contenders time the same number of images
        figures["ratio_cpu_time"] = round(reference.cpu_seconds / rdist.cpu_seconds, 3)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--methods", default="rslad,adaad")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--teacher", help="[default: wrn-34-10 on CUDA, resnet18 on the CPU]")
    parser.add_argument("--batch", type=int, help="[default: 128 on CUDA, 16 on the CPU]")
    parser.add_argument("--steps", type=int, help="timed steps per block [default: 4 on CUDA, 1 on the CPU]")
    parser.add_argument("--rounds", type=int,
                        help="timed blocks of each contender, alternating [default: 2 on CUDA, 4 on the CPU]")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps of each contender first")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers of the reference [default: 4 on CUDA, 0 on the CPU]")
    parser.add_argument("--attack-steps", type=int, default=10)
    parser.add_argument("--compile", action="store_true", help="torch.compile rdist's student and teacher")
    parser.add_argument("--compile-backend", default="inductor",
                        help="torch.compile backend; eager traces the step without generating code (dry runs)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    device = torch.device(args.device)
    for option, on_cuda, on_cpu in (("teacher", "wrn-34-10", "resnet18"), ("batch", 128, 16), ("steps", 4, 1),
                                    ("rounds", 2, 4)):
        if getattr(args, option) is None:
            setattr(args, option, on_cuda if device.type == "cuda" else on_cpu)
    # On the CPU loader workers would take cores from the step they feed: the reference loads in-process there.
    args.workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.student} student, {args.teacher} teacher, batch {args.batch}, {args.attack_steps}-step attack, "
          f"{name}, torch {torch.__version__}, compile {'on' if args.compile else 'off'}")
    print(f"rdist: {'bf16 autocast' if device.type == 'cuda' else 'fp32'}, channels_last, data on the device, no "
          f"sync per step; reference: fp32, NCHW, DataLoader ({args.workers} workers), .item() every step")
    figures = {"device": name, "torch": torch.__version__, "student": args.student, "teacher": args.teacher,
               "batch": args.batch, "attack_steps": args.attack_steps, "steps": args.steps, "rounds": args.rounds,
               "compile": args.compile and args.compile_backend}
    with cudnn_autotune(device):
        for method in args.methods.split(","):
            r = measure(method, args, device)
            figures[method] = r
            print(f"{method:>6}: rdist {r['rdist_images_per_s']:9.1f} images/s ({r['rdist_epoch_s']:8.1f} s/epoch)  "
                  f"reference {r['reference_images_per_s']:9.1f} images/s ({r['reference_epoch_s']:8.1f} s/epoch)  "
                  f"ratio {r['ratio']:.2f}x"
                  + (f" (CPU time {r['ratio_cpu_time']:.2f}x)" if "ratio_cpu_time" in r else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
