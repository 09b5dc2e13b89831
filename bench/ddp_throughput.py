"""Training throughput (images/s) of the engine under torchrun, for each number of processes: a short
`rdist distill --method rslad` run per world size, launched by torchrun, its log.jsonl read back.

    python bench/ddp_throughput.py --nproc 1 2 4 8 [--student resnet18 --data cifar10 --batch-size 128 --max-steps 100]
    python bench/ddp_throughput.py --nproc 1 2 --tiny      # the CPU smoke run: digits, tinycnn, seconds

One process per GPU on CUDA (nccl), CPU processes with gloo otherwise. The teacher is a small natural model trained
first in one process for one step (throughput does not depend on its weights). The first epoch includes warm-up
(allocator, cuDNN autotuning); with --epochs 2 or more the figure is the mean of the later epochs. Not a test:
numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TORCHRUN = Path(sys.executable).with_name("torchrun")


def rdist(args: list[str], nproc: int | None = None) -> None:
    launcher = [sys.executable, "-m", "rdist"] if nproc is None else [
        str(TORCHRUN), "--standalone", "--nproc-per-node", str(nproc), "-m", "rdist"]
    # stdout (rdist's run summary) is dropped: the script prints one line per world size.
    subprocess.run([*launcher, *args], check=True, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OMP_NUM_THREADS": "1"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="world sizes to measure")
    parser.add_argument("--tiny", action="store_true", help="digits, tinycnn student, smallcnn teacher (CPU)")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--teacher-arch", default="resnet18", help="architecture of the throw-away teacher")
    parser.add_argument("--data", default="cifar10")
    parser.add_argument("--batch-size", type=int, default=128, help="the global batch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="stop each run after this many steps")
    parser.add_argument("--sync-bn", action="store_true")
    args = parser.parse_args()
    if args.tiny:
        args.student, args.teacher_arch, args.data, args.batch_size, args.epochs = (
            "tinycnn", "smallcnn", "digits", 64, 2)
    with tempfile.TemporaryDirectory() as tmp:
        teacher = Path(tmp) / "teacher"
        rdist(["teacher", "train", "--method", "natural", "--arch", args.teacher_arch, "--data", args.data,
               "--epochs", "1", "--max-steps", "1", "--eval-n", "8", "--out", str(teacher), "--quiet"])
        print(f"rslad, {args.student} student, {args.teacher_arch} teacher, {args.data}, global batch "
              f"{args.batch_size}{', sync-bn' if args.sync_bn else ''}")
        for nproc in args.nproc:
            out = Path(tmp) / f"run{nproc}"
            rdist(["distill", "--method", "rslad", "--student", args.student, "--teacher",
                   str(teacher / "last.safetensors"), "--data", args.data, "--batch-size", str(args.batch_size),
                   "--epochs", str(args.epochs), "--eval-n", "8", "--out", str(out), "--quiet",
                   *(["--max-steps", str(args.max_steps)] if args.max_steps else []),
                   *(["--sync-bn"] if args.sync_bn else [])], nproc=nproc)
            records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
            timed = records[1:] or records
            images_per_s = sum(r["images_per_s"] for r in timed) / len(timed)
            print(f"{nproc:3d} process{'es' if nproc > 1 else '  '}: {images_per_s:10.1f} images/s")


if __name__ == "__main__":
    main()
